//! Binary operators: arithmetic, comparison (filtering or `bool`) and set
//! operators, with Prometheus' vector matching (`on`/`ignoring`,
//! `group_left`/`group_right`).
//!
//! Matching is prepared per series once (each series' match signature is
//! interned to an id), then each step only does array look-ups.

// FxHash: label-set keys hashed per series per step; SipHash was 7% of a
// rule evaluation round. Sizes are bounded by the query limits.
use rustc_hash::FxHashMap as HashMap;

use promql_parser::label::Labels as NameList;
use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB, TokenType,
};
use promql_parser::parser::{BinModifier, BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::QueryError;
use super::eval::{
    Evaluator, Grid, Series, Val, drop_name, label_value, labels_string, merge_same_labels,
    set_label, type_error,
};
use crate::query::source::{Labels, METRIC_NAME};

/// Applies an arithmetic or comparison operator to two floats: the value
/// and whether a comparison holds (always true for arithmetic).
fn apply(op: u16, l: f64, r: f64) -> Result<(f64, bool), QueryError> {
    Ok(match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_MOD => (l % r, true),
        T_POW => (l.powf(r), true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => {
            return Err(QueryError::BadData(format!(
                "operator {} is not supported here",
                TokenType::new(op)
            )));
        }
    })
}

fn is_comparison(op: u16) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

impl Evaluator<'_> {
    pub(crate) fn binary(&self, b: &BinaryExpr, grid: &Grid) -> Result<Val, QueryError> {
        let op = b.op.id();
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        if let Some(m) = &b.modifier {
            if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                return Err(QueryError::BadData(
                    "fill modifiers are not supported".into(),
                ));
            }
        }
        let lhs = self.eval(&b.lhs, grid)?;
        let rhs = self.eval(&b.rhs, grid)?;
        match (lhs, rhs) {
            (Val::Scalar(l), Val::Scalar(r)) => {
                let mut out = Vec::with_capacity(grid.n);
                for (l, r) in l.into_iter().zip(r) {
                    let (v, keep) = apply(op, l, r)?;
                    out.push(if is_comparison(op) {
                        f64::from(u8::from(keep))
                    } else {
                        v
                    });
                }
                Ok(Val::Scalar(out))
            }
            (Val::Vector(v), Val::Scalar(s)) => self
                .vector_scalar(op, v, &s, false, return_bool)
                .map(Val::Vector),
            (Val::Scalar(s), Val::Vector(v)) => self
                .vector_scalar(op, v, &s, true, return_bool)
                .map(Val::Vector),
            (Val::Vector(l), Val::Vector(r)) => {
                let default = BinModifier {
                    card: VectorMatchCardinality::OneToOne,
                    matching: None,
                    return_bool: false,
                    fill_values: Default::default(),
                };
                let m = b.modifier.as_ref().unwrap_or(&default);
                match op {
                    T_LAND | T_LOR | T_LUNLESS => self.set_op(op, l, r, m, grid).map(Val::Vector),
                    _ => self.vector_vector(op, l, r, m, grid).map(Val::Vector),
                }
            }
            (l, r) => {
                let bad = if matches!(l, Val::Scalar(_) | Val::Vector(_)) {
                    r
                } else {
                    l
                };
                Err(type_error("scalar or instant vector operand", &bad))
            }
        }
    }

    fn vector_scalar(
        &self,
        op: u16,
        series: Vec<Series>,
        scalar: &[f64],
        scalar_left: bool,
        return_bool: bool,
    ) -> Result<Vec<Series>, QueryError> {
        let cmp = is_comparison(op);
        let mut out = Vec::with_capacity(series.len());
        for s in series {
            self.check_deadline()?;
            let mut values = s.values;
            for (v, &k) in values.iter_mut().zip(scalar) {
                if let Some(x) = *v {
                    let (l, r) = if scalar_left { (k, x) } else { (x, k) };
                    let (res, keep) = apply(op, l, r)?;
                    *v = if return_bool {
                        Some(f64::from(u8::from(keep)))
                    } else if cmp {
                        // The vector's value is kept, on either side.
                        keep.then_some(x)
                    } else {
                        Some(res)
                    };
                }
            }
            let labels = if !cmp || return_bool {
                drop_name(s.labels)
            } else {
                s.labels
            };
            out.push(Series { labels, values });
        }
        let out = out
            .into_iter()
            .filter(|s| s.values.iter().any(Option::is_some))
            .collect();
        if !cmp || return_bool {
            return merge_same_labels(out);
        }
        Ok(out)
    }

    fn set_op(
        &self,
        op: u16,
        lhs: Vec<Series>,
        rhs: Vec<Series>,
        m: &BinModifier,
        grid: &Grid,
    ) -> Result<Vec<Series>, QueryError> {
        let (lsig, rsig, nsig) = match_signatures(&lhs, &rhs, m);
        let mut seen = vec![usize::MAX; nsig];
        match op {
            T_LAND | T_LUNLESS => {
                let mut lhs = lhs;
                for i in 0..grid.n {
                    self.check_deadline()?;
                    for (s, &sig) in rhs.iter().zip(&rsig) {
                        if s.values[i].is_some() {
                            seen[sig] = i;
                        }
                    }
                    for (s, &sig) in lhs.iter_mut().zip(&lsig) {
                        let present = seen[sig] == i;
                        if present != (op == T_LAND) {
                            s.values[i] = None;
                        }
                    }
                }
                Ok(lhs
                    .into_iter()
                    .filter(|s| s.values.iter().any(Option::is_some))
                    .collect())
            }
            _ => {
                let mut rhs = rhs;
                for i in 0..grid.n {
                    self.check_deadline()?;
                    for (s, &sig) in lhs.iter().zip(&lsig) {
                        if s.values[i].is_some() {
                            seen[sig] = i;
                        }
                    }
                    for (s, &sig) in rhs.iter_mut().zip(&rsig) {
                        if seen[sig] == i {
                            s.values[i] = None;
                        }
                    }
                }
                let mut out = lhs;
                out.extend(
                    rhs.into_iter()
                        .filter(|s| s.values.iter().any(Option::is_some)),
                );
                merge_same_labels(out)
            }
        }
    }

    fn vector_vector(
        &self,
        op: u16,
        lhs: Vec<Series>,
        rhs: Vec<Series>,
        m: &BinModifier,
        grid: &Grid,
    ) -> Result<Vec<Series>, QueryError> {
        let return_bool = m.return_bool;
        let cmp = is_comparison(op);
        // The "many" side drives the loop; for group_right that is the rhs.
        let swapped = matches!(m.card, VectorMatchCardinality::OneToMany(_));
        let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
        let include = m.card.labels().cloned();
        let (msig, osig, nsig) = match_signatures(&many, &one, m);
        // Per signature: the "one" series present at the current step.
        let mut one_at: Vec<(usize, usize)> = vec![(usize::MAX, 0); nsig];
        // Per signature: the step at which a many-side series last matched
        // (one-to-one duplicate detection).
        let mut matched_at = vec![usize::MAX; nsig];
        let mut result_of: HashMap<(usize, usize), usize> = HashMap::default();
        let mut out_index: HashMap<Labels, usize> = HashMap::default();
        let mut out: Vec<Series> = Vec::new();
        // Per output series: the step it was last produced at.
        let mut inserted: Vec<usize> = Vec::new();
        for i in 0..grid.n {
            self.check_deadline()?;
            for (j, (s, &sig)) in one.iter().zip(&osig).enumerate() {
                if s.values[i].is_none() {
                    continue;
                }
                if one_at[sig].0 == i {
                    let first = &one[one_at[sig].1];
                    let side = if swapped { "left" } else { "right" };
                    return Err(QueryError::Execution(format!(
                        "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                        labels_string(&match_labels(&first.labels, m.matching.as_ref())),
                        labels_string(&first.labels),
                        labels_string(&s.labels),
                    )));
                }
                one_at[sig] = (i, j);
            }
            for (j, (s, &sig)) in many.iter().zip(&msig).enumerate() {
                let Some(mv) = s.values[i] else { continue };
                if one_at[sig].0 != i {
                    continue;
                }
                let k = one_at[sig].1;
                let Some(ov) = one[k].values[i] else { continue };
                let (l, r) = if swapped { (ov, mv) } else { (mv, ov) };
                let (res, keep) = apply(op, l, r)?;
                if matches!(m.card, VectorMatchCardinality::OneToOne) {
                    if matched_at[sig] == i {
                        return Err(QueryError::Execution(
                            "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                        ));
                    }
                    matched_at[sig] = i;
                }
                let idx = match result_of.get(&(j, k)) {
                    Some(&idx) => idx,
                    None => {
                        let labels =
                            result_labels(&s.labels, &one[k].labels, op, m, include.as_ref());
                        let idx = *out_index.entry(labels.clone()).or_insert_with(|| {
                            out.push(Series {
                                labels,
                                values: vec![None; grid.n],
                            });
                            inserted.push(usize::MAX);
                            out.len() - 1
                        });
                        result_of.insert((j, k), idx);
                        idx
                    }
                };
                if inserted[idx] == i {
                    return Err(QueryError::Execution(
                        "multiple matches for labels: grouping labels must ensure unique matches"
                            .into(),
                    ));
                }
                inserted[idx] = i;
                out[idx].values[i] = if return_bool {
                    Some(f64::from(u8::from(keep)))
                } else if cmp {
                    keep.then_some(l)
                } else {
                    Some(res)
                };
            }
        }
        let out: Vec<Series> = out
            .into_iter()
            .filter(|s| s.values.iter().any(Option::is_some))
            .collect();
        self.count(out.iter().map(|s| s.values.len()).sum())?;
        Ok(out)
    }
}

/// The labels two series are matched on: the `on` labels, or all but the
/// `ignoring` labels and the metric name.
fn signature(labels: &Labels, matching: Option<&LabelModifier>) -> Labels {
    match_labels(labels, matching)
}

fn match_labels(labels: &Labels, matching: Option<&LabelModifier>) -> Labels {
    match matching {
        Some(LabelModifier::Include(on)) => labels
            .iter()
            .filter(|l| on.labels.contains(&l.name))
            .cloned()
            .collect(),
        Some(LabelModifier::Exclude(ign)) => labels
            .iter()
            .filter(|l| l.name != METRIC_NAME && !ign.labels.contains(&l.name))
            .cloned()
            .collect(),
        None => drop_name(labels.clone()),
    }
}

/// Labels of a vector/vector result: the "many" side's, without the metric
/// name for arithmetic and `bool`, reduced to the matching labels for
/// one-to-one matching, plus the `group_x(...)` labels from the "one" side.
fn result_labels(
    many: &Labels,
    one: &Labels,
    op: u16,
    m: &BinModifier,
    include: Option<&NameList>,
) -> Labels {
    let mut labels = many.clone();
    if !is_comparison(op) || m.return_bool {
        labels = drop_name(labels);
    }
    if matches!(m.card, VectorMatchCardinality::OneToOne) {
        match &m.matching {
            Some(LabelModifier::Include(on)) => labels.retain(|l| on.labels.contains(&l.name)),
            Some(LabelModifier::Exclude(ign)) => labels.retain(|l| !ign.labels.contains(&l.name)),
            None => {}
        }
    }
    if let Some(include) = include {
        for name in &include.labels {
            let v = label_value(one, name).to_string();
            set_label(&mut labels, name, &v);
        }
    }
    labels
}

/// Each side's matching signature (the labels `on`/`ignoring` compare) as a
/// small integer shared by both sides, and how many distinct signatures there
/// are: equal signatures get equal ids.
fn match_signatures(
    a: &[Series],
    b: &[Series],
    m: &BinModifier,
) -> (Vec<usize>, Vec<usize>, usize) {
    let mut interner = Interner::default();
    let mut ids = |side: &[Series]| -> Vec<usize> {
        side.iter()
            .map(|s| interner.id(signature(&s.labels, m.matching.as_ref())))
            .collect()
    };
    let (a, b) = (ids(a), ids(b));
    (a, b, interner.len())
}

/// Interns label sets to dense ids.
#[derive(Default)]
struct Interner {
    ids: HashMap<Labels, usize>,
}

impl Interner {
    fn id(&mut self, labels: Labels) -> usize {
        let n = self.ids.len();
        *self.ids.entry(labels).or_insert(n)
    }

    fn len(&self) -> usize {
        self.ids.len()
    }
}
