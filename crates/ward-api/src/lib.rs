//! ward-api: the admin API (`/api/v1` on the console listener), typed once.
//!
//! - [`routes`]: every operation with its method, path, access and the types of its request
//!   and answer. The server routes by this table, and [`openapi`] makes the document from it,
//!   so nothing is served that the document does not describe.
//! - [`fleet`], [`server`], [`tls`]: the requests (serde types that refuse unknown fields and
//!   state their constraints) and the answers, shared by the server that writes them, the CLI
//!   that reads them and the console.
//! - [`harden`]: what a client of the harden engine decides from its answers (pure), shared
//!   by `ward tls harden` and the console's wizard.
//! - [`schema`]: what the document says of a value beyond its type (names and paths by
//!   ward-fleet's own rules, durations, TLS values).
//!
//! Free-form JSON stays free-form only where it is: a group's policy document and an audit
//! entry's before and after.
//!
//! The error shape is ward-proto's `ErrorBody`, as for the agent API ([`Refusal`] reads it).

pub mod fleet;
pub mod harden;
pub mod openapi;
pub mod routes;
pub mod schema;
pub mod server;
pub mod tls;

pub use routes::{route, Access, Matched, Operation, Route, Unrouted, ROUTES};
/// An error's stable code and its sentence (the shape of ward-proto's `ErrorBody`, shared by
/// both APIs).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// A refusal as the API answers it: the error, and what a guard's refusal adds (the plan it
/// refused on, the findings of a reload, the agents a harden apply names).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Refusal {
    pub error: ErrorDetail,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<tls::GuardPlan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findings: Option<Vec<server::Finding>>,
    /// A harden apply's refusal: how many agents, and the first of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<Vec<tls::AgentLine>>,
}

#[cfg(test)]
mod tests;
