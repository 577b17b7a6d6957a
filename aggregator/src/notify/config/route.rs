//! The route tree: Alertmanager's `route:` block, compiled.
//!
//! A child inherits `receiver`, `group_by` and the three timers from its
//! parent when it does not set them (mute/active time intervals are not
//! inherited, as in Alertmanager). An alert enters at the root (which matches
//! everything); at each node the children are tried in order, the first one
//! that matches takes the alert unless it has `continue: true`, in which case
//! the following siblings are tried too; a node none of whose children match
//! takes the alert itself.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;

use super::matcher::{Matcher, all_match, display_set};
use crate::alert::LabelSet;
use crate::http::prometheus::params::parse_duration;

/// A Prometheus-style duration (`30s`, `1h30m`, `0s`).
fn duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let zero = t.trim_start_matches('0');
    if t.starts_with('0') && zero.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Ok(Duration::ZERO);
    }
    parse_duration(t)
}

/// One `route:` node as written.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawRoute {
    /// Receiver name; inherited when absent (required at the root).
    pub receiver: Option<String>,
    /// Labels to group by; `...` alone groups by every label.
    pub group_by: Option<Vec<String>>,
    /// Wait before the first notification of a new group (default 30s).
    pub group_wait: Option<String>,
    /// Wait between notifications of a changed group (default 5m).
    pub group_interval: Option<String>,
    /// Wait before re-sending an unchanged firing group (default 4h).
    pub repeat_interval: Option<String>,
    /// `a="b"`, `a=~"x"`, `a!="b"`, `a!~"x"`.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Legacy equality matchers.
    #[serde(default, rename = "match")]
    pub match_: BTreeMap<String, String>,
    /// Legacy regex matchers.
    #[serde(default)]
    pub match_re: BTreeMap<String, String>,
    /// Keep trying later siblings after this route matched.
    #[serde(default, rename = "continue")]
    pub continue_: bool,
    /// Child routes, tried in order.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// Names of time intervals during which this route does not notify.
    #[serde(default)]
    pub mute_time_intervals: Vec<String>,
    /// Names of time intervals outside which this route does not notify.
    #[serde(default)]
    pub active_time_intervals: Vec<String>,
}

/// How alerts of a route are grouped.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupBy {
    /// `group_by: ['...']`: one group per distinct label set.
    All,
    /// These labels (sorted; empty: one group for the whole route).
    Labels(Vec<String>),
}

impl GroupBy {
    /// The group labels of an alert with `labels`.
    pub fn group_labels(&self, labels: &LabelSet) -> LabelSet {
        match self {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => names
                .iter()
                .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone())))
                .collect(),
        }
    }
}

pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(300);
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

/// A compiled route node.
#[derive(Debug, Clone)]
pub struct Route {
    /// Unique path of this node (`{}` for the root, then `/{matchers}/index`
    /// per level), the first half of Alertmanager's group key.
    pub id: String,
    pub receiver: String,
    pub group_by: GroupBy,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub matchers: Vec<Matcher>,
    pub continue_: bool,
    pub routes: Vec<Route>,
    pub mute_time_intervals: Vec<String>,
    pub active_time_intervals: Vec<String>,
}

impl Route {
    /// The routes that take an alert with `labels` (empty when the root's
    /// own matchers do not match, which never happens for a valid root).
    pub fn matching(&self, labels: &LabelSet) -> Vec<&Route> {
        let mut out = Vec::new();
        self.collect(labels, &mut out);
        out
    }

    fn collect<'a>(&'a self, labels: &LabelSet, out: &mut Vec<&'a Route>) -> bool {
        if !all_match(&self.matchers, labels) {
            return false;
        }
        let before = out.len();
        for child in &self.routes {
            if child.collect(labels, out) && !child.continue_ {
                break;
            }
        }
        if out.len() == before {
            out.push(self);
        }
        true
    }

    /// Every node, depth first.
    pub fn walk(&self) -> Vec<&Route> {
        let mut out = vec![self];
        for c in &self.routes {
            out.extend(c.walk());
        }
        out
    }
}

/// What a child inherits.
struct Inherited<'a> {
    id: &'a str,
    receiver: Option<&'a str>,
    group_by: &'a GroupBy,
    group_wait: Duration,
    group_interval: Duration,
    repeat_interval: Duration,
}

/// Compiles the root route; `receivers` and `intervals` are the defined
/// names. Every problem goes to `problems`.
pub fn compile_root(
    raw: &RawRoute,
    receivers: &BTreeSet<String>,
    intervals: &BTreeSet<String>,
    problems: &mut Vec<String>,
) -> Option<Route> {
    let before = problems.len();
    if raw.receiver.is_none() {
        problems.push("route: the root route must name a receiver".into());
    }
    if !raw.matchers.is_empty() || !raw.match_.is_empty() || !raw.match_re.is_empty() {
        problems.push("route: the root route must not have matchers (it takes every alert)".into());
    }
    if raw.continue_ {
        problems.push("route: the root route cannot have continue".into());
    }
    let top = Inherited {
        id: "",
        receiver: None,
        group_by: &GroupBy::Labels(Vec::new()),
        group_wait: DEFAULT_GROUP_WAIT,
        group_interval: DEFAULT_GROUP_INTERVAL,
        repeat_interval: DEFAULT_REPEAT_INTERVAL,
    };
    let ctx = Ctx {
        receivers,
        intervals,
    };
    let root = ctx.compile(raw, &top, "route", None, problems);
    (problems.len() == before).then_some(root)
}

struct Ctx<'a> {
    receivers: &'a BTreeSet<String>,
    intervals: &'a BTreeSet<String>,
}

impl Ctx<'_> {
    fn compile(
        &self,
        raw: &RawRoute,
        parent: &Inherited<'_>,
        at: &str,
        index: Option<usize>,
        problems: &mut Vec<String>,
    ) -> Route {
        let mut matchers = Vec::new();
        for text in &raw.matchers {
            match super::matcher::parse_list(text) {
                Ok(m) => matchers.extend(m),
                Err(e) => problems.push(format!("{at}.matchers: {e}")),
            }
        }
        for (name, value) in &raw.match_ {
            match Matcher::new(name, super::matcher::MatchOp::Equal, value) {
                Ok(m) => matchers.push(m),
                Err(e) => problems.push(format!("{at}.match: {e}")),
            }
        }
        for (name, value) in &raw.match_re {
            match Matcher::new(name, super::matcher::MatchOp::Regex, value) {
                Ok(m) => matchers.push(m),
                Err(e) => problems.push(format!("{at}.match_re: {e}")),
            }
        }
        let receiver = raw.receiver.as_deref().or(parent.receiver).unwrap_or("");
        if let Some(r) = &raw.receiver
            && !self.receivers.contains(r)
        {
            problems.push(format!("{at}.receiver: undefined receiver {r:?}"));
        }
        let group_by = match &raw.group_by {
            None => parent.group_by.clone(),
            Some(list) if list.iter().any(|l| l == "...") => {
                if list.len() > 1 {
                    problems.push(format!("{at}.group_by: '...' must be the only entry"));
                }
                GroupBy::All
            }
            Some(list) => {
                let mut names = Vec::new();
                for l in list {
                    if super::matcher::valid_label_name(l) {
                        names.push(l.clone());
                    } else {
                        problems.push(format!("{at}.group_by: invalid label name {l:?}"));
                    }
                }
                names.sort();
                names.dedup();
                GroupBy::Labels(names)
            }
        };
        let timer = |name: &str, raw: &Option<String>, inherited: Duration, p: &mut Vec<String>| {
            match raw {
                None => inherited,
                Some(text) => match duration(text) {
                    Ok(d) if !d.is_zero() || name == "group_wait" => d,
                    Ok(_) => {
                        p.push(format!("{at}.{name}: must be greater than zero"));
                        inherited
                    }
                    Err(e) => {
                        p.push(format!("{at}.{name}: {e}"));
                        inherited
                    }
                },
            }
        };
        let group_wait = timer("group_wait", &raw.group_wait, parent.group_wait, problems);
        let group_interval = timer(
            "group_interval",
            &raw.group_interval,
            parent.group_interval,
            problems,
        );
        let repeat_interval = timer(
            "repeat_interval",
            &raw.repeat_interval,
            parent.repeat_interval,
            problems,
        );
        for (field, names) in [
            ("mute_time_intervals", &raw.mute_time_intervals),
            ("active_time_intervals", &raw.active_time_intervals),
        ] {
            for n in names {
                if !self.intervals.contains(n) {
                    problems.push(format!("{at}.{field}: undefined time interval {n:?}"));
                }
            }
        }
        let id = match index {
            None => "{}".to_string(),
            Some(i) => format!("{}/{}/{i}", parent.id, display_set(&matchers)),
        };
        let inherited = Inherited {
            id: &id,
            receiver: Some(receiver),
            group_by: &group_by,
            group_wait,
            group_interval,
            repeat_interval,
        };
        let routes = raw
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                self.compile(
                    r,
                    &inherited,
                    &format!("{at}.routes[{i}]"),
                    Some(i),
                    problems,
                )
            })
            .collect();
        Route {
            receiver: receiver.to_string(),
            group_by: group_by.clone(),
            group_wait,
            group_interval,
            repeat_interval,
            matchers,
            continue_: raw.continue_,
            routes,
            mute_time_intervals: raw.mute_time_intervals.clone(),
            active_time_intervals: raw.active_time_intervals.clone(),
            id,
        }
    }
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
