//! Functions.

use promql_parser::parser::Call;

use super::QueryError;
use super::eval::{Evaluator, Grid, Val};

impl Evaluator<'_> {
    pub(crate) fn call(&self, c: &Call, _grid: &Grid) -> Result<Val, QueryError> {
        Err(QueryError::BadData(format!(
            "function {} is not supported",
            c.func.name
        )))
    }
}
