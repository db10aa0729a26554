//! Seeds an etcd with a fleet's published history, for `scripts/fleet-bench` (the time a new
//! instance takes to load the fleet's last days): DAYS × 1,440 minutes for each of INSTANCES
//! instances, every minute holding ENDPOINTS endpoints' buckets, written exactly as a running
//! instance publishes them (same key layout and encoding), under one lease of two weeks.
//!
//! Usage: `fleet_seed ETCD_URL FLEET DAYS ENDPOINTS INSTANCES`

use std::sync::Arc;

use etcd_client::{Client, PutOptions, Txn, TxnOp};
use prescale::historian::series::FullBucket;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    let [_, url, fleet, days, endpoints, instances] = &a[..] else {
        return Err("usage: fleet_seed ETCD_URL FLEET DAYS ENDPOINTS INSTANCES".into());
    };
    let (days, endpoints, instances): (u64, usize, usize) = (days.parse()?, endpoints.parse()?, instances.parse()?);
    let names: Vec<Arc<str>> = (0..endpoints).map(|i| Arc::from(format!("e{i}"))).collect();
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
        let mut c = Client::connect([url.as_str()], None).await?;
        let lease = c.lease_grant(14 * 86_400, None).await?.id();
        let now_min = prescale::clock::now_us() / 60_000_000;
        let mut ops = Vec::new();
        let mut bytes = 0usize;
        let mut keys = 0usize;
        for m in now_min - days * 1440..now_min - 1 {
            for i in 0..instances {
                let buckets: Vec<(Arc<str>, FullBucket)> = names
                    .iter()
                    .enumerate()
                    .map(|(k, n)| {
                        let calls = 30 + ((m + k as u64 * 7 + i as u64) % 60);
                        let b = FullBucket {
                            calls,
                            e4: calls / 50,
                            e5: calls / 200,
                            timeouts: 0,
                            bytes_in: calls * 200,
                            bytes_out: calls * 1500,
                            latency_sum_us: calls * 4000,
                            lat_us: [3000, 9000, 20_000, 40_000],
                        };
                        (n.clone(), b)
                    })
                    .collect();
                let v = prescale::fleet::encode_minute(&buckets);
                bytes += v.len();
                keys += 1;
                let key = prescale::fleet::bucket_key(fleet, m, &format!("seed-{i}"));
                ops.push(TxnOp::put(key, v, Some(PutOptions::new().with_lease(lease))));
                if ops.len() == 64 {
                    c.txn(Txn::new().and_then(std::mem::take(&mut ops))).await?;
                }
            }
        }
        if !ops.is_empty() {
            c.txn(Txn::new().and_then(ops)).await?;
        }
        println!("seeded {keys} minutes, {:.1} MB", bytes as f64 / 1e6);
        Ok(())
    })
}
