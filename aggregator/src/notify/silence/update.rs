//! Editing a silence, as Alertmanager's `Silences.Set` does when it is given
//! an id: the change is made in place when it does not rewrite what was
//! silenced so far ([`can_update`], Alertmanager's `canUpdate`); otherwise
//! the old silence is expired (unless it already is) and a new one, with a
//! new id, takes its place, in one transaction.

use super::{
    EXPIRE_LITE, EXPIRE_PG, INSERT_LITE, INSERT_PG, NewSilence, Silence, SilenceError,
    SilenceState, Silences, expired_now, validate,
};
use crate::store::{Db, StoreError};

/// Whether `old` can become `new` in place at `now_ms` without changing
/// history: same matchers (same order, as Alertmanager compares them);
/// an active silence keeps its start (compared to the second, as
/// Alertmanager does) and its end may not move into the past; a pending
/// one may change both, but not start in the past; an expired one never.
pub(super) fn can_update(old: &Silence, new: &NewSilence, now_ms: i64) -> bool {
    if old.matchers != new.matchers {
        return false;
    }
    match old.state(now_ms) {
        SilenceState::Active => {
            old.starts_at_ms.div_euclid(1000) == new.starts_at_ms.div_euclid(1000)
                && new.ends_at_ms >= now_ms
        }
        SilenceState::Pending => new.starts_at_ms >= now_ms,
        SilenceState::Expired => false,
    }
}

const UPDATE_PG: &str = "UPDATE silences SET starts_at_ms = $2, ends_at_ms = $3, created_by = $4, comment = $5, updated_at_ms = $6 WHERE id = $1";
const UPDATE_LITE: &str = "UPDATE silences SET starts_at_ms = ?2, ends_at_ms = ?3, created_by = ?4, comment = ?5, updated_at_ms = ?6 WHERE id = ?1";

impl Silences {
    /// Applies `new` to the silence `id` and returns the result: the same
    /// silence updated in place, or its replacement (a new id) when
    /// [`can_update`] says no. `new` is validated as a new silence is.
    pub async fn update(
        &self,
        id: &str,
        new: NewSilence,
        now_ms: i64,
    ) -> Result<Silence, SilenceError> {
        let _turn = self.write.lock().await;
        self.ensure_loaded().await?;
        let compiled = validate(&new, now_ms)?;
        let old = self
            .get(id)
            .ok_or_else(|| SilenceError::NotFound(id.to_string()))?;
        if can_update(&old, &new, now_ms) {
            let starts_at_ms = match old.state(now_ms) {
                SilenceState::Active => old.starts_at_ms,
                _ => new.starts_at_ms,
            };
            let s = Silence {
                starts_at_ms,
                ends_at_ms: new.ends_at_ms,
                created_by: new.created_by,
                comment: new.comment,
                updated_at_ms: now_ms,
                ..old
            };
            self.write_in_place(&s).await?;
            self.cache_put(s.clone());
            return Ok(s);
        }
        let fresh = self.fresh(new, compiled, now_ms)?;
        let expired = expired_now(old, now_ms);
        self.write_replacement(expired.as_ref(), &fresh).await?;
        if let Some(e) = expired {
            self.cache_put(e);
        }
        self.cache_put(fresh.clone());
        Ok(fresh)
    }

    async fn write_in_place(&self, s: &Silence) -> Result<(), StoreError> {
        match &self.db {
            Db::Postgres(pool) => {
                sqlx::query(UPDATE_PG)
                    .bind(&s.id)
                    .bind(s.starts_at_ms)
                    .bind(s.ends_at_ms)
                    .bind(&s.created_by)
                    .bind(&s.comment)
                    .bind(s.updated_at_ms)
                    .execute(pool)
                    .await?;
            }
            Db::Sqlite { writer, .. } => {
                sqlx::query(UPDATE_LITE)
                    .bind(&s.id)
                    .bind(s.starts_at_ms)
                    .bind(s.ends_at_ms)
                    .bind(&s.created_by)
                    .bind(&s.comment)
                    .bind(s.updated_at_ms)
                    .execute(writer)
                    .await?;
            }
        }
        Ok(())
    }

    /// Expires `old` (when given) and inserts `new`, both or neither.
    async fn write_replacement(
        &self,
        old: Option<&Silence>,
        new: &Silence,
    ) -> Result<(), StoreError> {
        let matchers =
            serde_json::to_string(&new.matchers).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // The two backends need different placeholders, so one macro body
        // runs the same steps on either transaction.
        macro_rules! replace {
            ($pool:expr, $expire:expr, $insert:expr) => {{
                let mut tx = $pool.begin().await?;
                if let Some(old) = old {
                    sqlx::query($expire)
                        .bind(&old.id)
                        .bind(old.starts_at_ms)
                        .bind(old.ends_at_ms)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query($insert)
                    .bind(&new.id)
                    .bind(&matchers)
                    .bind(new.starts_at_ms)
                    .bind(new.ends_at_ms)
                    .bind(&new.created_by)
                    .bind(&new.comment)
                    .bind(new.updated_at_ms)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }};
        }
        match &self.db {
            Db::Postgres(pool) => replace!(pool, EXPIRE_PG, INSERT_PG),
            Db::Sqlite { writer, .. } => replace!(writer, EXPIRE_LITE, INSERT_LITE),
        }
        Ok(())
    }
}
