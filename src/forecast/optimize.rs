//! A bounded Nelder–Mead minimiser: parameters live in boxes `[lo, hi]`, searched in an
//! unconstrained space through a logistic map, so every trial point is feasible.

/// Minimises `f` over the box; starts from `x0` (clamped inside), stops after `max_evals`
/// evaluations or when the simplex's spread of values falls under `tol`.
pub(crate) fn minimize(
    f: &mut dyn FnMut(&[f64]) -> f64,
    x0: &[f64],
    lo: &[f64],
    hi: &[f64],
    max_evals: usize,
    tol: f64,
) -> (Vec<f64>, f64) {
    let n = x0.len();
    let to_u = |x: &[f64]| -> Vec<f64> {
        x.iter()
            .enumerate()
            .map(|(i, v)| {
                let p = ((v - lo[i]) / (hi[i] - lo[i])).clamp(1e-6, 1.0 - 1e-6);
                (p / (1.0 - p)).ln()
            })
            .collect()
    };
    let to_x = |u: &[f64]| -> Vec<f64> {
        u.iter().enumerate().map(|(i, v)| lo[i] + (hi[i] - lo[i]) / (1.0 + (-v).exp())).collect()
    };
    let mut evals = 0;
    let mut eval = |u: &[f64], evals: &mut usize| -> f64 {
        *evals += 1;
        let v = f(&to_x(u));
        if v.is_finite() { v } else { f64::MAX }
    };
    let start = to_u(x0);
    let mut simplex: Vec<(Vec<f64>, f64)> = Vec::with_capacity(n + 1);
    simplex.push((start.clone(), eval(&start, &mut evals)));
    for i in 0..n {
        let mut p = start.clone();
        p[i] += 1.0;
        let v = eval(&p, &mut evals);
        simplex.push((p, v));
    }
    while evals < max_evals {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        let (best, worst) = (simplex[0].1, simplex[n].1);
        if (worst - best).abs() <= tol * (best.abs() + 1e-12) {
            break;
        }
        let centroid: Vec<f64> = (0..n).map(|j| simplex[..n].iter().map(|p| p.0[j]).sum::<f64>() / n as f64).collect();
        let along =
            |t: f64| -> Vec<f64> { (0..n).map(|j| centroid[j] + t * (simplex[n].0[j] - centroid[j])).collect() };
        let r = along(-1.0);
        let fr = eval(&r, &mut evals);
        if fr < simplex[0].1 {
            let e = along(-2.0);
            let fe = eval(&e, &mut evals);
            simplex[n] = if fe < fr { (e, fe) } else { (r, fr) };
        } else if fr < simplex[n - 1].1 {
            simplex[n] = (r, fr);
        } else {
            let c = if fr < simplex[n].1 { along(-0.5) } else { along(0.5) };
            let fc = eval(&c, &mut evals);
            if fc < simplex[n].1.min(fr) {
                simplex[n] = (c, fc);
            } else {
                // Shrink towards the best point.
                let b = simplex[0].0.clone();
                for point in simplex.iter_mut().skip(1) {
                    let p: Vec<f64> = (0..n).map(|j| b[j] + 0.5 * (point.0[j] - b[j])).collect();
                    let v = eval(&p, &mut evals);
                    *point = (p, v);
                }
            }
        }
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    (to_x(&simplex[0].0), simplex[0].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_bounded_minimum() {
        let mut f = |x: &[f64]| (x[0] - 0.3).powi(2) + (x[1] - 0.7).powi(2) * 10.0;
        let (x, v) = minimize(&mut f, &[0.5, 0.5], &[0.0, 0.0], &[1.0, 1.0], 2000, 1e-12);
        assert!((x[0] - 0.3).abs() < 1e-3 && (x[1] - 0.7).abs() < 1e-3, "{x:?}");
        assert!(v < 1e-5);
        // A minimum outside the box ends on its edge.
        let mut g = |x: &[f64]| (x[0] - 2.0).powi(2);
        let (x, _) = minimize(&mut g, &[0.5], &[0.0], &[1.0], 2000, 1e-12);
        assert!(x[0] > 0.99, "{x:?}");
    }
}
