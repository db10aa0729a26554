//! One instance's closed minute as stored in etcd: a JSON object of the endpoints that had
//! calls, each an array `[calls, 4xx, 5xx, timeouts, bytes_in, bytes_out, latency_sum_us,
//! p50_us, p90_us, p99_us, max_us]`. Quiet endpoints are left out (the key's presence says the
//! instance was recording that minute, so a missing endpoint is a zero).

use crate::historian::series::FullBucket;

/// The value of one instance's minute.
pub fn encode_minute(buckets: &[(std::sync::Arc<str>, FullBucket)]) -> String {
    let mut m = serde_json::Map::new();
    for (name, b) in buckets {
        if *b == FullBucket::default() {
            continue;
        }
        let v = [
            b.calls,
            b.e4,
            b.e5,
            b.timeouts,
            b.bytes_in,
            b.bytes_out,
            b.latency_sum_us,
            b.lat_us[0],
            b.lat_us[1],
            b.lat_us[2],
            b.lat_us[3],
        ];
        m.insert(name.to_string(), serde_json::json!(v));
    }
    serde_json::Value::Object(m).to_string()
}

/// The other direction; `None` for a value that is not one (another version, damage).
pub fn decode_minute(value: &[u8]) -> Option<Vec<(String, FullBucket)>> {
    let m: std::collections::BTreeMap<String, Vec<u64>> = serde_json::from_slice(value).ok()?;
    m.into_iter()
        .map(|(name, v)| {
            let [calls, e4, e5, timeouts, bytes_in, bytes_out, latency_sum_us, p50, p90, p99, max] = v[..] else {
                return None;
            };
            Some((
                name,
                FullBucket {
                    calls,
                    e4,
                    e5,
                    timeouts,
                    bytes_in,
                    bytes_out,
                    latency_sum_us,
                    lat_us: [p50, p90, p99, max],
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_round_trip_without_quiet_endpoints() {
        let b = FullBucket {
            calls: 120,
            e4: 3,
            e5: 1,
            timeouts: 1,
            bytes_in: 4096,
            bytes_out: 1 << 40,
            latency_sum_us: 987_654,
            lat_us: [1200, 5000, 9000, 12_000],
        };
        let v = encode_minute(&[("api".into(), b), ("quiet".into(), FullBucket::default())]);
        assert!(!v.contains("quiet"), "{v}");
        assert_eq!(decode_minute(v.as_bytes()), Some(vec![("api".to_string(), b)]));
        assert_eq!(decode_minute(b"{\"api\":[1,2]}"), None);
        assert_eq!(decode_minute(b"not json"), None);
        assert_eq!(decode_minute(b"{}"), Some(vec![]));
    }
}
