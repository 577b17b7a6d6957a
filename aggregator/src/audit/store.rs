//! The `audit_log` table (migration 0011): inserts and the filtered, paged
//! read. One SQL text per operation serves both databases; every value goes
//! through a bind, never into the SQL text.

use sqlx::AssertSqlSafe;

use super::{Event, MAX_FIELD_BYTES};
use crate::store::{Db, StoreError};

/// A stored audit record.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Record {
    pub id: i64,
    pub at_ms: i64,
    pub actor_kind: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    /// JSON text.
    pub details: String,
    pub source: Option<String>,
}

/// Which records to read, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// At or after (ms).
    pub since_ms: Option<i64>,
    /// At or before (ms).
    pub until_ms: Option<i64>,
    /// Exactly this actor name.
    pub actor: Option<String>,
    /// Exactly this action (`alert.ack`).
    pub action: Option<String>,
    /// Only ids below this one: the `next` cursor of the previous page.
    pub before_id: Option<i64>,
    /// Page size.
    pub limit: u32,
}

/// One page of records and the cursor for the next (`None`: last page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub records: Vec<Record>,
    pub next: Option<i64>,
}

const INSERT: &str = "INSERT INTO audit_log
    (at_ms, actor_kind, actor, action, target, details, source)
    VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id";

const SELECT: &str =
    "SELECT id, at_ms, actor_kind, actor, action, target, details, source FROM audit_log";

/// `s` cut to at most [`MAX_FIELD_BYTES`] on a char boundary.
fn capped(s: &str) -> &str {
    if s.len() <= MAX_FIELD_BYTES {
        return s;
    }
    let mut end = MAX_FIELD_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Inserts one record; its id.
pub async fn insert(db: &Db, event: &Event, at_ms: i64) -> Result<i64, StoreError> {
    let details = event.details.to_string();
    macro_rules! run {
        ($pool:expr) => {
            sqlx::query_scalar::<_, i64>(INSERT)
                .bind(at_ms)
                .bind(event.actor.kind.as_str())
                .bind(capped(&event.actor.name))
                .bind(event.action.as_str())
                .bind(capped(&event.target))
                .bind(&details)
                .bind(event.source.as_deref().map(capped))
                .fetch_one($pool)
                .await?
        };
    }
    Ok(match db {
        Db::Postgres(pool) => run!(pool),
        Db::Sqlite { writer, .. } => run!(writer),
    })
}

/// A bind value of the read query.
enum Value {
    Int(i64),
    Text(String),
}

/// The WHERE clause for `filter` (placeholders `$1..`) and its values.
fn where_clause(filter: &Filter) -> (String, Vec<Value>) {
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    let mut add = |column: &str, op: &str, value: Value| {
        values.push(value);
        conditions.push(format!("{column} {op} ${}", values.len()));
    };
    if let Some(t) = filter.since_ms {
        add("at_ms", ">=", Value::Int(t));
    }
    if let Some(t) = filter.until_ms {
        add("at_ms", "<=", Value::Int(t));
    }
    if let Some(a) = &filter.actor {
        add("actor", "=", Value::Text(a.clone()));
    }
    if let Some(a) = &filter.action {
        add("action", "=", Value::Text(a.clone()));
    }
    if let Some(id) = filter.before_id {
        add("id", "<", Value::Int(id));
    }
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    (clause, values)
}

/// The newest records matching `filter`, at most `filter.limit`.
pub async fn query(db: &Db, filter: &Filter) -> Result<Page, StoreError> {
    let (clause, values) = where_clause(filter);
    // One more than the page, to know whether another page follows.
    let sql = format!(
        "{SELECT}{clause} ORDER BY id DESC LIMIT {}",
        u64::from(filter.limit) + 1
    );
    macro_rules! run {
        ($pool:expr) => {{
            let mut q = sqlx::query_as::<_, Record>(AssertSqlSafe(sql));
            for v in values {
                q = match v {
                    Value::Int(i) => q.bind(i),
                    Value::Text(s) => q.bind(s),
                };
            }
            q.fetch_all($pool).await?
        }};
    }
    let mut records = match db {
        Db::Postgres(pool) => run!(pool),
        Db::Sqlite { reader, .. } => run!(reader),
    };
    let limit = usize::try_from(filter.limit).unwrap_or(usize::MAX);
    let next = if records.len() > limit {
        records.truncate(limit);
        records.last().map(|r| r.id)
    } else {
        None
    };
    Ok(Page { records, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_capped_on_a_char_boundary() {
        let long = "é".repeat(MAX_FIELD_BYTES);
        let cut = capped(&long);
        assert!(cut.len() <= MAX_FIELD_BYTES && cut.len() >= MAX_FIELD_BYTES - 1);
        assert_eq!(capped("short"), "short");
    }

    #[test]
    fn the_where_clause_has_one_placeholder_per_filter_and_no_values() {
        let filter = Filter {
            since_ms: Some(1),
            actor: Some("x' OR 1=1 --".into()),
            action: Some("alert.ack".into()),
            limit: 10,
            ..Filter::default()
        };
        let (clause, values) = where_clause(&filter);
        assert_eq!(clause, " WHERE at_ms >= $1 AND actor = $2 AND action = $3");
        assert_eq!(values.len(), 3);
        assert_eq!(where_clause(&Filter::default()).0, "");
    }
}
