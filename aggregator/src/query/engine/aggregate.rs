//! Aggregation operators.

use promql_parser::parser::AggregateExpr;

use super::QueryError;
use super::eval::{Evaluator, Grid, Val};

impl Evaluator<'_> {
    pub(crate) fn aggregate(&self, a: &AggregateExpr, _grid: &Grid) -> Result<Val, QueryError> {
        Err(QueryError::BadData(format!(
            "aggregation {} is not supported",
            a.op
        )))
    }
}
