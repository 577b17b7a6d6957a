//! Nagios-style flap detection (`vigil.flap`): each alert keeps its last
//! `window` states (firing or not); once the window is full, the weighted
//! share of state changes decides whether it is flapping.

use std::collections::VecDeque;

use super::machine::{Entry, Event, Phase, Transition};
use crate::alert::rules::FlapDetection;

/// Nagios' weighted percent state change, as a share (0..=1): over the
/// last `history.len()` states, each change counts with a weight rising
/// linearly from 0.8 (oldest) to 1.2 (newest).
pub fn state_change_share(history: &VecDeque<bool>) -> f64 {
    let n = history.len();
    if n < 2 {
        return 0.0;
    }
    let changes = n - 1;
    let mut total = 0.0;
    for i in 0..changes {
        if history[i] != history[i + 1] {
            let weight = if changes == 1 {
                1.0
            } else {
                0.8 + 0.4 * i as f64 / (changes - 1) as f64
            };
            total += weight;
        }
    }
    total / changes as f64
}

/// Records the alert's state in its flap history and starts or stops
/// flapping on the thresholds.
pub fn track(e: &mut Entry, flap: FlapDetection, now: i64) -> Option<Transition> {
    e.flap.history.push_back(e.phase == Phase::Firing);
    while e.flap.history.len() > flap.window.max(2) {
        e.flap.history.pop_front();
    }
    if e.flap.history.len() < flap.window.max(2) {
        // Not enough evaluations yet to judge.
        return None;
    }
    let share = state_change_share(&e.flap.history);
    if !e.flap.flapping && share > flap.high {
        e.flap.flapping = true;
        e.flap.starts_at_ms = Some(e.fired_at_ms.unwrap_or(now));
        e.dirty = true;
        Some(Transition::of(e, Event::FlappingStart, now))
    } else if e.flap.flapping && share < flap.low {
        e.flap.flapping = false;
        if e.phase == Phase::Inactive {
            // The notifier last saw it firing (as flapping): resolve now.
            e.resolved_at_ms = Some(now);
        }
        e.dirty = true;
        Some(Transition::of(e, Event::FlappingStop, now))
    } else {
        None
    }
}
