//! Chained parameters and `_has` look through references at other resources. The store evaluates
//! them over everything it holds, so a match may owe its place to a resource the decision point
//! withholds (`Patient?_has:Observation:subject:code=X` would reveal that a withheld Observation
//! with code X exists). When the decision point has a rule, every match of such a query is checked
//! again here, looking only through resources the requester may see.

use std::future::Future;
use std::pin::Pin;

use fhir::search::{Clause, IndexValue, Predicate, Query, Total};
use store::{SearchOptions, Stored};

use super::support::parse_stored;
use super::{Error, Repository, Result};
use crate::access::Requester;

type Holds<'a> = Pin<Box<dyn Future<Output = Result<bool>> + Send + 'a>>;

/// The page size used to walk the resources a `_has` condition looks at.
const WALK_PAGE: usize = 200;

/// Whether a query has a chained parameter or `_has` anywhere.
pub(crate) fn looks_through_references(query: &Query) -> bool {
    query.clauses.iter().any(|c| {
        c.any
            .iter()
            .any(|p| matches!(p, Predicate::Chain { .. } | Predicate::Has { .. }))
    })
}

impl Repository {
    /// Whether `stored`, a match of `query`, still matches when chains and `_has` see only what `who`
    /// may see. Clauses without chains or `_has` were decided by the store and are not asked again.
    pub(crate) async fn still_matches(
        &self,
        who: &Requester,
        query: &Query,
        stored: &Stored,
    ) -> Result<bool> {
        for clause in &query.clauses {
            if !clause
                .any
                .iter()
                .any(|p| matches!(p, Predicate::Chain { .. } | Predicate::Has { .. }))
            {
                continue;
            }
            let mut any = false;
            for predicate in &clause.any {
                if self.holds(who, predicate, stored).await? {
                    any = true;
                    break;
                }
            }
            if !any {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether `predicate` holds for `stored`, looking only through visible resources.
    fn holds<'a>(
        &'a self,
        who: &'a Requester,
        predicate: &'a Predicate,
        stored: &'a Stored,
    ) -> Holds<'a> {
        Box::pin(async move {
            match predicate {
                Predicate::Chain {
                    param,
                    target_types,
                    inner,
                } => {
                    let resource = parse_stored(stored)?;
                    let mut targets = Vec::new();
                    for entry in fhir::search::extract::index_entries(&resource) {
                        if entry.param != *param {
                            continue;
                        }
                        if let IndexValue::Reference {
                            target_type: Some(ty),
                            target_id: Some(id),
                            ..
                        } = entry.value
                        {
                            if target_types.iter().any(|t| *t == ty) {
                                targets.push((ty, id));
                            }
                        }
                    }
                    for (ty, id) in targets {
                        let Some(target) = self.store.read(&ty, &id).await? else {
                            continue;
                        };
                        if target.deleted || !self.gate.decide(who, &target).await?.is_permit() {
                            continue;
                        }
                        if self.holds(who, inner, &target).await? {
                            return Ok(true);
                        }
                    }
                    Ok(false)
                }
                Predicate::Has {
                    source_type,
                    ref_param,
                    inner,
                } => {
                    // Every resource of `source_type` that refers to `stored` through `ref_param`.
                    let reference = format!("{}/{}", stored.resource_type, stored.id);
                    let mut query = condition(source_type, ref_param, &reference)?;
                    let options = SearchOptions {
                        count: WALK_PAGE,
                        max_includes: 0,
                    };
                    loop {
                        let page = self.store.search(&query, &options).await?;
                        for source in &page.matches {
                            if self.gate.decide(who, source).await?.is_permit()
                                && self.holds(who, inner, source).await?
                            {
                                return Ok(true);
                            }
                        }
                        match page.next {
                            Some(next) => query.page = Some(next),
                            None => return Ok(false),
                        }
                    }
                }
                plain => {
                    // Asked of the store, about this one resource.
                    let mut query = condition(&stored.resource_type, "_id", &stored.id)?;
                    query.clauses.push(Clause {
                        any: vec![plain.clone()],
                    });
                    let page = self
                        .store
                        .search(
                            &query,
                            &SearchOptions {
                                count: 1,
                                max_includes: 0,
                            },
                        )
                        .await?;
                    Ok(!page.matches.is_empty())
                }
            }
        })
    }
}

/// The query `resource_type?name=value`, without a total.
fn condition(resource_type: &str, name: &str, value: &str) -> Result<Query> {
    let params = [(name.to_string(), value.to_string())];
    let mut query = fhir::search::parse::parse(Some(resource_type), &params, true)
        .map_err(Error::Invalid)?
        .query;
    query.total = Total::None;
    Ok(query)
}
