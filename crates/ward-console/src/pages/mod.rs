//! One module per section of the console. Each reads through `ward_server::operations` and
//! renders the typed answer; each change goes through the same operation the admin API calls.

pub mod agents;
pub mod audit;
pub mod dashboard;
pub mod groups;
pub mod login;
#[cfg(test)]
mod test_agents;
pub mod tls;
