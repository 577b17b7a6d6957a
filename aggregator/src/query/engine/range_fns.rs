//! The range-vector functions (`rate`, `deriv`, `*_over_time`, ...): each
//! series' samples are walked once, the window sliding with the steps.

use promql_parser::parser::Expr;

use super::QueryError;
use super::eval::{Evaluator, Grid, Series, drop_name, merge_same_labels};
use super::mathfn;
use crate::query::source::Labels;

/// A function of one window of samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeFn {
    Rate,
    Irate,
    Increase,
    Delta,
    Idelta,
    Deriv,
    PredictLinear,
    Resets,
    Changes,
    Avg,
    Min,
    Max,
    Sum,
    Count,
    Last,
    First,
    Quantile,
    Stddev,
    Stdvar,
    Present,
}

impl RangeFn {
    pub fn from_name(name: &str) -> Option<RangeFn> {
        use RangeFn::*;
        Some(match name {
            "rate" => Rate,
            "irate" => Irate,
            "increase" => Increase,
            "delta" => Delta,
            "idelta" => Idelta,
            "deriv" => Deriv,
            "predict_linear" => PredictLinear,
            "resets" => Resets,
            "changes" => Changes,
            "avg_over_time" => Avg,
            "min_over_time" => Min,
            "max_over_time" => Max,
            "sum_over_time" => Sum,
            "count_over_time" => Count,
            "last_over_time" => Last,
            "first_over_time" => First,
            "quantile_over_time" => Quantile,
            "stddev_over_time" => Stddev,
            "stdvar_over_time" => Stdvar,
            "present_over_time" => Present,
            _ => return None,
        })
    }

    /// The value over window `w` = samples in `(start, end]`; `eval_ts` is
    /// the evaluation time and `param` the scalar argument, if any.
    fn apply(
        self,
        w: &[(i64, f64)],
        start: i64,
        end: i64,
        range_secs: f64,
        eval_ts: i64,
        param: f64,
    ) -> Option<f64> {
        use RangeFn::*;
        match self {
            Rate => return mathfn::extrapolated_rate(w, start, end, range_secs, true, true),
            Increase => return mathfn::extrapolated_rate(w, start, end, range_secs, true, false),
            Delta => return mathfn::extrapolated_rate(w, start, end, range_secs, false, false),
            Irate => return mathfn::instant_delta(w, true),
            Idelta => return mathfn::instant_delta(w, false),
            Deriv => return (w.len() >= 2).then(|| mathfn::linear_regression(w, w[0].0).0),
            PredictLinear => {
                return (w.len() >= 2).then(|| {
                    let (slope, intercept) = mathfn::linear_regression(w, eval_ts);
                    slope * param + intercept
                });
            }
            _ => {}
        }
        if w.is_empty() {
            return None;
        }
        let vals = w.iter().map(|p| p.1);
        Some(match self {
            Resets => w.windows(2).filter(|p| p[1].1 < p[0].1).count() as f64,
            Changes => w
                .windows(2)
                .filter(|p| !(p[1].1 == p[0].1 || (p[1].1.is_nan() && p[0].1.is_nan())))
                .count() as f64,
            Avg => mathfn::avg(vals),
            Min => vals.fold(f64::NAN, |m, x| if x < m || m.is_nan() { x } else { m }),
            Max => vals.fold(f64::NAN, |m, x| if x > m || m.is_nan() { x } else { m }),
            Sum => mathfn::kahan_sum(vals),
            Count => w.len() as f64,
            Last => w[w.len() - 1].1,
            First => w[0].1,
            Quantile => {
                let mut v: Vec<f64> = vals.collect();
                mathfn::quantile(param, &mut v)
            }
            Stddev => mathfn::stdvar(vals).sqrt(),
            Stdvar => mathfn::stdvar(vals),
            _ => 1.0, // present_over_time
        })
    }
}

impl Evaluator<'_> {
    pub(crate) fn range_func(
        &self,
        f: RangeFn,
        args: &[&Expr],
        grid: &Grid,
    ) -> Result<Vec<Series>, QueryError> {
        // The range argument is first, except for quantile_over_time(q, m).
        let (m, param) = match f {
            RangeFn::Quantile => (args.get(1), args.first()),
            RangeFn::PredictLinear => (args.first(), args.get(1)),
            _ => (args.first(), None),
        };
        let m = m.ok_or_else(|| QueryError::BadData("missing range vector argument".into()))?;
        let param = match param {
            Some(p) => self.eval_scalar(p, grid)?,
            None => vec![f64::NAN; grid.n],
        };
        let arg = self.range_arg(m, grid)?;
        let keep_name = matches!(f, RangeFn::Last | RangeFn::First);
        let range_secs = arg.range as f64 / 1000.0;
        let mut out = Vec::new();
        for s in &arg.series {
            self.check_deadline()?;
            let mut values = vec![None; grid.n];
            arg.windows(&s.samples, grid, |i, w, start, end| {
                // An `@`-pinned call is step-invariant: Prometheus evaluates
                // it once, at the query's start.
                let eval_ts = if arg.at.is_some() {
                    self.query_start
                } else {
                    grid.ts(i)
                };
                values[i] = f.apply(w, start, end, range_secs, eval_ts, param[i]);
            });
            let labels = if keep_name {
                Labels::clone(&s.labels)
            } else {
                drop_name(Labels::clone(&s.labels))
            };
            self.push_series(&mut out, labels, values)?;
        }
        if keep_name {
            Ok(out)
        } else {
            merge_same_labels(out)
        }
    }
}
