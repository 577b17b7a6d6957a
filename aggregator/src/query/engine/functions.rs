//! Functions: the range-vector family (`rate`, `*_over_time`, ...), which
//! walk each series' samples once with a moving window, and the
//! instant-vector and scalar functions.
//!
//! Which functions keep the metric name follows Prometheus: the
//! value-changing ones drop it; `last_over_time`, `first_over_time`,
//! `sort*`, `label_replace` and `label_join` keep it.

use promql_parser::parser::{Call, Expr};
use regex::Regex;

use super::QueryError;
use super::eval::{
    Evaluator, Grid, Series, Val, drop_name, label_value, merge_same_labels, set_label,
};
use super::mathfn;
use super::range_fns::RangeFn;
use crate::query::source::{Labels, METRIC_NAME};

impl Evaluator<'_> {
    pub(crate) fn call(&self, c: &Call, grid: &Grid) -> Result<Val, QueryError> {
        let name = c.func.name;
        let args: Vec<&Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
        if let Some(f) = RangeFn::from_name(name) {
            return self.range_func(f, &args, grid).map(Val::Vector);
        }
        let arg = |i: usize| {
            args.get(i).copied().ok_or_else(|| {
                QueryError::BadData(format!("missing argument {} of {name}()", i + 1))
            })
        };
        let math = |f: fn(f64) -> f64| -> Result<Val, QueryError> {
            let v = self.eval_vector(arg(0)?, grid)?;
            Ok(Val::Vector(map_values(v, true, |_, x| Some(f(x)))?))
        };
        match name {
            "abs" => math(f64::abs),
            "ceil" => math(f64::ceil),
            "floor" => math(f64::floor),
            "exp" => math(f64::exp),
            "ln" => math(f64::ln),
            "log2" => math(f64::log2),
            "log10" => math(f64::log10),
            "sqrt" => math(f64::sqrt),
            "sgn" => math(mathfn::sgn),
            "acos" => math(f64::acos),
            "acosh" => math(f64::acosh),
            "asin" => math(f64::asin),
            "asinh" => math(f64::asinh),
            "atan" => math(f64::atan),
            "atanh" => math(f64::atanh),
            "cos" => math(f64::cos),
            "cosh" => math(f64::cosh),
            "sin" => math(f64::sin),
            "sinh" => math(f64::sinh),
            "tan" => math(f64::tan),
            "tanh" => math(f64::tanh),
            "deg" => math(f64::to_degrees),
            "rad" => math(f64::to_radians),
            "pi" => Ok(Val::Scalar(vec![std::f64::consts::PI; grid.n])),
            "time" => Ok(Val::Scalar(
                (0..grid.n).map(|i| grid.ts(i) as f64 / 1000.0).collect(),
            )),
            "round" => {
                let v = self.eval_vector(arg(0)?, grid)?;
                let to = match args.get(1) {
                    Some(e) => self.eval_scalar(e, grid)?,
                    None => vec![1.0; grid.n],
                };
                Ok(Val::Vector(map_values(v, true, |i, x| {
                    let inv = 1.0 / to[i];
                    Some((x * inv + 0.5).floor() / inv)
                })?))
            }
            "clamp" => {
                let v = self.eval_vector(arg(0)?, grid)?;
                let lo = self.eval_scalar(arg(1)?, grid)?;
                let hi = self.eval_scalar(arg(2)?, grid)?;
                Ok(Val::Vector(map_values(v, true, |i, x| {
                    // Empty only when max < min; a NaN bound yields NaN.
                    (hi[i] >= lo[i] || hi[i].is_nan() || lo[i].is_nan())
                        .then(|| mathfn::go_max(lo[i], mathfn::go_min(hi[i], x)))
                })?))
            }
            "clamp_min" | "clamp_max" => {
                let v = self.eval_vector(arg(0)?, grid)?;
                let b = self.eval_scalar(arg(1)?, grid)?;
                let min = name == "clamp_min";
                Ok(Val::Vector(map_values(v, true, |i, x| {
                    Some(if min {
                        mathfn::go_max(b[i], x)
                    } else {
                        mathfn::go_min(b[i], x)
                    })
                })?))
            }
            "timestamp" => {
                let mut inner = arg(0)?;
                while let Expr::Paren(p) = inner {
                    inner = &p.expr;
                }
                let v = match inner {
                    Expr::VectorSelector(vs) => self.vector_selector(vs, grid, true)?,
                    e => {
                        let v = self.eval_vector(e, grid)?;
                        map_values(v, false, |i, _| Some(grid.ts(i) as f64 / 1000.0))?
                    }
                };
                let v = v
                    .into_iter()
                    .map(|s| Series {
                        labels: drop_name(s.labels),
                        values: s.values,
                    })
                    .collect();
                Ok(Val::Vector(merge_same_labels(v)?))
            }
            "minute" | "hour" | "day_of_week" | "day_of_month" | "day_of_year"
            | "days_in_month" | "month" | "year" => {
                let f = mathfn::date_fn(name);
                match args.first() {
                    None => Ok(Val::Vector(vec![Series {
                        labels: Vec::new(),
                        values: (0..grid.n)
                            .map(|i| Some(f(grid.ts(i) as f64 / 1000.0)))
                            .collect(),
                    }])),
                    Some(e) => {
                        let v = self.eval_vector(e, grid)?;
                        Ok(Val::Vector(map_values(v, true, |_, x| Some(f(x)))?))
                    }
                }
            }
            "vector" => {
                let s = self.eval_scalar(arg(0)?, grid)?;
                Ok(Val::Vector(vec![Series {
                    labels: Vec::new(),
                    values: s.into_iter().map(Some).collect(),
                }]))
            }
            "scalar" => {
                let v = self.eval_vector(arg(0)?, grid)?;
                Ok(Val::Scalar(
                    (0..grid.n)
                        .map(|i| {
                            let mut present = v.iter().filter_map(|s| s.values[i]);
                            match (present.next(), present.next()) {
                                (Some(x), None) => x,
                                _ => f64::NAN,
                            }
                        })
                        .collect(),
                ))
            }
            "sort" | "sort_desc" => {
                let mut v = self.eval_vector(arg(0)?, grid)?;
                if grid.n == 1 {
                    let desc = name == "sort_desc";
                    v.sort_by(|a, b| {
                        let (x, y) = (
                            a.values[0].unwrap_or(f64::NAN),
                            b.values[0].unwrap_or(f64::NAN),
                        );
                        mathfn::cmp_nan_last(x, y, desc)
                    });
                }
                Ok(Val::Vector(v))
            }
            "absent" => {
                let v = self.eval_vector(arg(0)?, grid)?;
                let labels = absent_labels(arg(0)?);
                let values = (0..grid.n)
                    .map(|i| (!v.iter().any(|s| s.values[i].is_some())).then_some(1.0))
                    .collect();
                let mut out = Vec::new();
                self.push_series(&mut out, labels, values)?;
                Ok(Val::Vector(out))
            }
            "absent_over_time" => {
                let a = self.range_arg(arg(0)?, grid)?;
                let mut any = vec![false; grid.n];
                for s in &a.series {
                    a.windows(&s.samples, grid, |i, w, _, _| any[i] |= !w.is_empty());
                }
                let labels = absent_labels(arg(0)?);
                let mut out = Vec::new();
                self.push_series(
                    &mut out,
                    labels,
                    any.into_iter().map(|a| (!a).then_some(1.0)).collect(),
                )?;
                Ok(Val::Vector(out))
            }
            "label_replace" => {
                let v = self.eval_vector(arg(0)?, grid)?;
                let dst = self.eval_string(arg(1)?, grid)?;
                let repl = self.eval_string(arg(2)?, grid)?;
                let src = self.eval_string(arg(3)?, grid)?;
                let re = self.eval_string(arg(4)?, grid)?;
                let re = Regex::new(&format!("^(?s:{re})$")).map_err(|_| {
                    QueryError::BadData(format!(
                        "invalid regular expression in label_replace(): {re}"
                    ))
                })?;
                if !valid_label_name(&dst) {
                    return Err(QueryError::BadData(format!(
                        "invalid destination label name in label_replace(): {dst}"
                    )));
                }
                let v = v
                    .into_iter()
                    .map(|mut s| {
                        if let Some(caps) = re.captures(label_value(&s.labels, &src)) {
                            let mut value = String::new();
                            caps.expand(&repl, &mut value);
                            set_label(&mut s.labels, &dst, &value);
                        }
                        s
                    })
                    .collect();
                Ok(Val::Vector(merge_same_labels(v)?))
            }
            "label_join" => {
                let v = self.eval_vector(arg(0)?, grid)?;
                let dst = self.eval_string(arg(1)?, grid)?;
                let sep = self.eval_string(arg(2)?, grid)?;
                let mut srcs = Vec::new();
                for e in args.iter().skip(3) {
                    srcs.push(self.eval_string(e, grid)?);
                }
                if !valid_label_name(&dst) {
                    return Err(QueryError::BadData(format!(
                        "invalid destination label name in label_join(): {dst}"
                    )));
                }
                let v = v
                    .into_iter()
                    .map(|mut s| {
                        let value = srcs
                            .iter()
                            .map(|n| label_value(&s.labels, n))
                            .collect::<Vec<_>>()
                            .join(&sep);
                        set_label(&mut s.labels, &dst, &value);
                        s
                    })
                    .collect();
                Ok(Val::Vector(merge_same_labels(v)?))
            }
            "histogram_quantile" => {
                let q = self.eval_scalar(arg(0)?, grid)?;
                let v = self.eval_vector(arg(1)?, grid)?;
                self.histogram_quantile(&q, v, grid).map(Val::Vector)
            }
            _ => Err(QueryError::BadData(format!(
                "function \"{name}\" is not supported"
            ))),
        }
    }

    fn histogram_quantile(
        &self,
        q: &[f64],
        input: Vec<Series>,
        grid: &Grid,
    ) -> Result<Vec<Series>, QueryError> {
        // Group the bucket series by their labels without `le`; the result
        // drops the name, so two histograms differing only by name collide
        // (an error, as in Prometheus).
        let mut groups: Vec<(Labels, Vec<(f64, usize)>)> = Vec::new();
        let mut index = std::collections::HashMap::new();
        for (j, s) in input.iter().enumerate() {
            let Ok(le) = parse_le(label_value(&s.labels, "le")) else {
                continue;
            };
            let key: Labels = s
                .labels
                .iter()
                .filter(|l| l.name != "le")
                .cloned()
                .collect();
            let g = *index.entry(key.clone()).or_insert_with(|| {
                groups.push((key, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push((le, j));
        }
        let mut out = Vec::new();
        let mut buckets = Vec::new();
        for (labels, members) in groups {
            self.check_deadline()?;
            let mut values = vec![None; grid.n];
            for (i, slot) in values.iter_mut().enumerate() {
                buckets.clear();
                buckets.extend(
                    members
                        .iter()
                        .filter_map(|&(le, j)| input[j].values[i].map(|c| (le, c))),
                );
                if !buckets.is_empty() {
                    *slot = Some(mathfn::bucket_quantile(q[i], &mut buckets));
                }
            }
            self.push_series(&mut out, drop_name(labels), values)?;
        }
        merge_same_labels(out)
    }
}

/// Applies `f(step, value)` to every value, dropping the metric name if asked;
/// `None` from `f` removes the value.
fn map_values(
    series: Vec<Series>,
    drop: bool,
    f: impl Fn(usize, f64) -> Option<f64>,
) -> Result<Vec<Series>, QueryError> {
    let out: Vec<Series> = series
        .into_iter()
        .map(|s| Series {
            labels: if drop { drop_name(s.labels) } else { s.labels },
            values: s
                .values
                .into_iter()
                .enumerate()
                .map(|(i, v)| v.and_then(|x| f(i, x)))
                .collect(),
        })
        .filter(|s| s.values.iter().any(Option::is_some))
        .collect();
    if drop {
        merge_same_labels(out)
    } else {
        Ok(out)
    }
}

/// Labels of `absent(sel)`: each label's first equality matcher sets it;
/// any later matcher on the same label, or a non-equality matcher, removes
/// it (Prometheus' `createLabelsForAbsentFunction`). No metric name.
fn absent_labels(expr: &Expr) -> Labels {
    let vs = match expr {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Vec::new(),
    };
    let mut labels: Labels = Vec::new();
    let mut has: Vec<&str> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, promql_parser::label::MatchOp::Equal) && !has.contains(&m.name.as_str()) {
            set_label(&mut labels, &m.name, &m.value);
            has.push(&m.name);
        } else {
            set_label(&mut labels, &m.name, "");
        }
    }
    labels
}

fn parse_le(s: &str) -> Result<f64, ()> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Ok(f64::INFINITY),
        "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
        _ => s.trim().parse().map_err(|_| ()),
    }
}

/// Prometheus 3 accepts any non-empty UTF-8 label name.
fn valid_label_name(s: &str) -> bool {
    !s.is_empty()
}
