//! Aggregation operators (`sum`, `avg`, `topk`, `count_values`, ...) with
//! `by`/`without`. Each input series is assigned its group once; each step
//! then gathers the group's values and reduces them.

// FxHash: label-set keys hashed per series per step; SipHash was 7% of a
// rule evaluation round. Sizes are bounded by the query limits.
use rustc_hash::FxHashMap as HashMap;

use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_MAX, T_MIN, T_QUANTILE, T_STDDEV,
    T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, LabelModifier};

use super::QueryError;
use super::eval::{Evaluator, Grid, Series, Val, set_label};
use super::mathfn;
use crate::query::source::{Labels, METRIC_NAME};

impl Evaluator<'_> {
    pub(crate) fn aggregate(&self, a: &AggregateExpr, grid: &Grid) -> Result<Val, QueryError> {
        let op = a.op.id();
        let param = |what: &str| {
            a.param
                .as_ref()
                .ok_or_else(|| QueryError::BadData(format!("{} needs a {what} parameter", a.op)))
        };
        let scalar_param = match op {
            T_TOPK | T_BOTTOMK | T_QUANTILE => self.eval_scalar(param("scalar")?, grid)?,
            _ => Vec::new(),
        };
        if matches!(op, T_TOPK | T_BOTTOMK) && scalar_param.iter().any(|k| k.is_nan()) {
            return Err(QueryError::Execution("Parameter value is NaN".into()));
        }
        let string_param = match op {
            T_COUNT_VALUES => {
                let name = self.eval_string(param("string")?, grid)?;
                if name.is_empty() {
                    return Err(QueryError::BadData(format!("invalid label name {name:?}")));
                }
                Some(name)
            }
            _ => None,
        };
        if !matches!(
            op,
            T_SUM
                | T_AVG
                | T_MIN
                | T_MAX
                | T_COUNT
                | T_GROUP
                | T_STDDEV
                | T_STDVAR
                | T_QUANTILE
                | T_TOPK
                | T_BOTTOMK
                | T_COUNT_VALUES
        ) {
            return Err(QueryError::BadData(format!(
                "aggregation \"{}\" is not supported",
                a.op
            )));
        }
        let input = self.eval_vector(&a.expr, grid)?;

        // Group of every input series.
        let mut index: HashMap<Labels, usize> = HashMap::default();
        let mut groups: Vec<Labels> = Vec::new();
        let gid: Vec<usize> = input
            .iter()
            .map(|s| {
                let key = group_labels(&s.labels, a.modifier.as_ref());
                *index.entry(key.clone()).or_insert_with(|| {
                    groups.push(key);
                    groups.len() - 1
                })
            })
            .collect();

        let mut members: Vec<Vec<(f64, usize)>> = vec![Vec::new(); groups.len()];
        let mut out: Vec<Series> = Vec::new();
        // topk/bottomk: per input series, the output slot (kept in
        // selection order so an instant result is sorted as Prometheus').
        let mut selected: Vec<Option<usize>> = vec![None; input.len()];
        // count_values: output series by label set.
        let mut cv_index: HashMap<Labels, usize> = HashMap::default();
        let mut buf: Vec<f64> = Vec::new();
        let mut result: Vec<Vec<Option<f64>>> = vec![vec![None; grid.n]; groups.len()];

        for i in 0..grid.n {
            self.check_deadline()?;
            for m in members.iter_mut() {
                m.clear();
            }
            for (j, s) in input.iter().enumerate() {
                if let Some(v) = s.values[i] {
                    members[gid[j]].push((v, j));
                }
            }
            for (g, m) in members.iter_mut().enumerate() {
                if m.is_empty() {
                    continue;
                }
                match op {
                    T_TOPK | T_BOTTOMK => {
                        let k = scalar_param[i];
                        if k < 1.0 {
                            continue;
                        }
                        let k = if k >= m.len() as f64 {
                            m.len()
                        } else {
                            k as usize
                        };
                        let desc = op == T_TOPK;
                        m.sort_by(|x, y| mathfn::cmp_nan_last(x.0, y.0, desc));
                        for &(v, j) in m.iter().take(k) {
                            let slot = *selected[j].get_or_insert_with(|| {
                                out.push(Series {
                                    labels: input[j].labels.clone(),
                                    values: vec![None; grid.n],
                                });
                                out.len() - 1
                            });
                            out[slot].values[i] = Some(v);
                        }
                    }
                    T_COUNT_VALUES => {
                        let name = string_param.as_deref().unwrap_or_default();
                        for &(v, _) in m.iter() {
                            let mut labels = groups[g].clone();
                            set_label(&mut labels, name, &format_value(v));
                            let slot = *cv_index.entry(labels.clone()).or_insert_with(|| {
                                out.push(Series {
                                    labels,
                                    values: vec![None; grid.n],
                                });
                                out.len() - 1
                            });
                            let c = out[slot].values[i].get_or_insert(0.0);
                            *c += 1.0;
                        }
                    }
                    _ => {
                        buf.clear();
                        buf.extend(m.iter().map(|p| p.0));
                        let vals = buf.iter().copied();
                        result[g][i] =
                            Some(match op {
                                T_SUM => mathfn::kahan_sum(vals),
                                T_AVG => mathfn::avg(vals),
                                T_MIN => vals
                                    .fold(f64::NAN, |a, x| if x < a || a.is_nan() { x } else { a }),
                                T_MAX => vals
                                    .fold(f64::NAN, |a, x| if x > a || a.is_nan() { x } else { a }),
                                T_COUNT => buf.len() as f64,
                                T_GROUP => 1.0,
                                T_STDDEV => mathfn::stdvar(vals).sqrt(),
                                T_STDVAR => mathfn::stdvar(vals),
                                _ => mathfn::quantile(scalar_param[i], &mut buf), // quantile
                            });
                    }
                }
            }
        }
        if matches!(op, T_TOPK | T_BOTTOMK | T_COUNT_VALUES) {
            self.count(out.iter().map(|s| s.values.len()).sum())?;
            return Ok(Val::Vector(out));
        }
        for (labels, values) in groups.into_iter().zip(result) {
            self.push_series(&mut out, labels, values)?;
        }
        Ok(Val::Vector(out))
    }
}

/// The labels an element is grouped by: the `by` labels, or all but the
/// `without` labels and the metric name; none without a modifier.
fn group_labels(labels: &Labels, modifier: Option<&LabelModifier>) -> Labels {
    match modifier {
        None => Vec::new(),
        Some(LabelModifier::Include(by)) => labels
            .iter()
            .filter(|l| by.labels.contains(&l.name))
            .cloned()
            .collect(),
        Some(LabelModifier::Exclude(without)) => labels
            .iter()
            .filter(|l| l.name != METRIC_NAME && !without.labels.contains(&l.name))
            .cloned()
            .collect(),
    }
}

/// A float as Go's `strconv.FormatFloat(v, 'f', -1, 64)` prints it, which
/// is how `count_values` labels values.
pub(crate) fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}
