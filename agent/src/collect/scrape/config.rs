//! Checks of `[[collect.scrape]]` and `[[collect.probe]]`, and the scrape an
//! `api` host gets by default. Called from the agent's config validation, so
//! these problems are listed together with every other one.

use std::collections::HashSet;
use std::time::Duration;

use hyper::header::HeaderValue;

use super::ScrapeConfig;
use crate::collect::http::{self, Target};
use crate::config::{AgentConfig, MAX_INTERVAL, check_range, is_valid_role};

/// What an `api` host with no `[[collect.scrape]]` scrapes, as job `api`.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:8000/metrics";

/// Names of built-in collectors, which a scrape or probe may not take
/// (the name is the `collector` label of the health series).
const RESERVED_NAMES: [&str; 4] = ["system", "agent", "postgres", "redis"];

/// The scrapes to run: the configured ones or, for a host with role `api`
/// and none configured, [`DEFAULT_API_URL`] as job `api`.
pub fn scrapes(config: &AgentConfig) -> Vec<ScrapeConfig> {
    if config.collect.scrape.is_empty() && config.roles.iter().any(|r| r == "api") {
        vec![ScrapeConfig::new("api", DEFAULT_API_URL)]
    } else {
        config.collect.scrape.clone()
    }
}

/// Value problems of every scrape and probe.
pub fn config_problems(config: &AgentConfig) -> Vec<String> {
    let mut p = Vec::new();
    let mut names = HashSet::new();
    let ms = Duration::from_millis;
    let five_minutes = Duration::from_secs(300);
    for (i, s) in config.collect.scrape.iter().enumerate() {
        let key = format!("collect.scrape[{i}]");
        check_name(&mut p, &mut names, &key, &s.name);
        check_url(&mut p, &key, &s.url);
        if !is_valid_role(&s.role) {
            p.push(format!(
                "{key}.role: {:?} is not a valid role (use [a-zA-Z0-9_-]+)",
                s.role
            ));
        }
        p.extend(check_range(
            &format!("{key}.timeout"),
            s.timeout,
            ms(10),
            five_minutes,
        ));
        if let Some(every) = s.interval {
            p.extend(check_range(
                &format!("{key}.interval"),
                every,
                config.interval,
                MAX_INTERVAL,
            ));
        }
        if !(1024..=1 << 30).contains(&s.max_body_bytes) {
            p.push(format!(
                "{key}.max_body_bytes: must be from 1024 to {}",
                1u64 << 30
            ));
        }
        if !(1..=1_000_000).contains(&s.max_series) {
            p.push(format!("{key}.max_series: must be from 1 to 1000000"));
        }
        if s.bearer_token.is_some() && s.basic_auth.is_some() {
            p.push(format!("{key}: set bearer_token or basic_auth, not both"));
        }
        if let Some(auth) = s.authorization() {
            if HeaderValue::from_str(&auth).is_err() {
                p.push(format!(
                    "{key}: credentials contain characters not allowed in a header"
                ));
            }
        }
        for (j, rule) in s.relabel.iter().enumerate() {
            if let Err(problems) = rule.compile(&format!("{key}.relabel[{j}]")) {
                p.extend(problems);
            }
        }
    }
    for (i, probe) in config.collect.probe.iter().enumerate() {
        let key = format!("collect.probe[{i}]");
        check_name(&mut p, &mut names, &key, &probe.name);
        check_url(&mut p, &key, &probe.url);
        p.extend(check_range(
            &format!("{key}.timeout"),
            probe.timeout,
            ms(10),
            five_minutes,
        ));
        if let Some(role) = probe.role.as_deref().filter(|r| !is_valid_role(r)) {
            p.push(format!(
                "{key}.role: {role:?} is not a valid role (use [a-zA-Z0-9_-]+)"
            ));
        }
        for code in &probe.expected_status {
            if !(100..=599).contains(code) {
                p.push(format!(
                    "{key}.expected_status: {code} is not an HTTP status code"
                ));
            }
        }
    }
    p
}

fn check_name(p: &mut Vec<String>, names: &mut HashSet<String>, key: &str, name: &str) {
    if name.trim().is_empty() {
        p.push(format!("{key}.name: must not be empty"));
    } else if name.chars().any(char::is_control) {
        p.push(format!("{key}.name: {name:?} contains control characters"));
    } else if RESERVED_NAMES.contains(&name) {
        p.push(format!(
            "{key}.name: {name:?} is the name of a built-in collector"
        ));
    } else if !names.insert(name.to_string()) {
        p.push(format!(
            "{key}.name: {name:?} is used by another scrape or probe"
        ));
    }
}

fn check_url(p: &mut Vec<String>, key: &str, url: &str) {
    if let Err(e) = Target::parse(url) {
        p.push(format!("{key}.url: {e}"));
    }
}

/// The CA files scrapes and probes name: each must hold a certificate.
pub fn file_problems(config: &AgentConfig) -> Vec<String> {
    let scrapes = (config.collect.scrape.iter().enumerate())
        .map(|(i, s)| (format!("collect.scrape[{i}].ca_file"), &s.ca_file));
    let probes = (config.collect.probe.iter().enumerate())
        .map(|(i, s)| (format!("collect.probe[{i}].ca_file"), &s.ca_file));
    scrapes
        .chain(probes)
        .filter_map(|(key, path)| {
            let path = path.as_deref()?;
            http::tls_config(Some(path))
                .err()
                .map(|e| format!("{key}: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests;
