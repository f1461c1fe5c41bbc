//! The filter every `[[expect]]` entry may carry (`client`, `method`, `from`,
//! `to`): which calls a check looks at. Each name must match something the
//! scenario defines, and the window must lie inside the run.

use super::fields::method_name;
use super::names::{Context, Role};
use crate::scenario::duration::format_duration;
use crate::scenario::error::{did_you_mean_or_list, ScenarioError};
use crate::scenario::raw::RawExpect;
use crate::scenario::schema::Filter;

/// `client`, `method`, `from`, `to`.
pub(super) fn check_filter(cx: &Context<'_>, raw: &RawExpect) -> Result<Filter, ScenarioError> {
    let loc = &cx.loc;
    let clients = match &raw.client {
        Some(c) => Some(cx.names.resolve(loc, c, "client", &[Role::Client])?),
        None => None,
    };
    let method = match &raw.method {
        Some(m) => {
            let method = method_name(loc, m)?;
            if !cx.methods.contains(&method) {
                let called: Vec<&str> = cx.methods.iter().map(String::as_str).collect();
                return Err(loc.at(
                    m.span(),
                    format!("no client calls method \"{method}\""),
                    Some(did_you_mean_or_list(&method, &called)),
                ));
            }
            Some(method)
        }
        None => None,
    };
    let from = raw.from.as_ref().map(|f| f.get_ref().0).unwrap_or_default();
    let to = raw.to.as_ref().map(|t| t.get_ref().0);
    for (key, value) in [("from", raw.from.as_ref()), ("to", raw.to.as_ref())] {
        if let Some(value) = value {
            if value.get_ref().0 > cx.duration {
                return Err(loc.at(
                    value.span(),
                    format!(
                        "{key} {} is after the end of the scenario ({})",
                        format_duration(value.get_ref().0),
                        format_duration(cx.duration)
                    ),
                    Some(format!("omit {key} to mean the end of the run")),
                ));
            }
        }
    }
    if let (Some(to), Some(to_span)) = (to, raw.to.as_ref()) {
        if to <= from {
            return Err(loc.at(
                to_span.span(),
                format!(
                    "empty window: to {} is not after from {}",
                    format_duration(to),
                    format_duration(from)
                ),
                Some("the window is [from, to)".into()),
            ));
        }
    }
    Ok(Filter {
        clients,
        method,
        from,
        to,
        may_have_executed: raw.may_have_executed.as_ref().map(|m| *m.get_ref()),
    })
}
