//! Why an agent's exchange with a server, or its own state, failed. Each variant says where
//! the failure came from, so the run loop decides (try the next server, back off, obey a
//! busy server's Retry-After, stop) from the kind, never from a message's text.

use std::fmt;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentError {
    /// The server could not be reached or the exchange broke: connect, TLS, read, timeout.
    Transport { server: String, detail: String },
    /// The server refused the request and said why (a signed answer, or an unsigned one
    /// before the agent is known).
    Refused {
        server: String,
        status: u16,
        code: String,
        message: String,
    },
    /// The server is busy (503): not before `retry_after`.
    Busy {
        server: String,
        retry_after: Duration,
    },
    /// The answer cannot be trusted or read: no MAC, a bad MAC, malformed JSON.
    Untrusted { server: String, detail: String },
    /// The agent's own state: its settings file, its key, its directory.
    State(String),
    /// Something the caller asked for that cannot be done (a bad argument).
    Usage(String),
}

impl AgentError {
    pub fn transport(server: &str, detail: impl fmt::Display) -> AgentError {
        AgentError::Transport {
            server: server.to_string(),
            detail: detail.to_string(),
        }
    }

    pub fn untrusted(server: &str, detail: impl fmt::Display) -> AgentError {
        AgentError::Untrusted {
            server: server.to_string(),
            detail: detail.to_string(),
        }
    }

    pub fn state(detail: impl fmt::Display) -> AgentError {
        AgentError::State(detail.to_string())
    }

    /// How long a busy server asked the agent to stay away.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AgentError::Busy { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Whether the path to the server failed (it could not be reached, or what came back
    /// could not be verified), as opposed to a server that answered (a signed refusal, a
    /// busy server): what puts new settings' server list in doubt.
    pub fn is_path_failure(&self) -> bool {
        matches!(
            self,
            AgentError::Transport { .. } | AgentError::Untrusted { .. }
        )
    }

    /// What happened, without the server's name.
    pub fn detail(&self) -> String {
        match self {
            AgentError::Transport { detail, .. } | AgentError::Untrusted { detail, .. } => {
                detail.clone()
            }
            other => other.to_string(),
        }
    }

    /// A short class for reports (`ward simulate`).
    pub fn class(&self) -> &'static str {
        match self {
            AgentError::Transport { .. } => "transport",
            AgentError::Refused { .. } => "refused",
            AgentError::Busy { .. } => "busy",
            AgentError::Untrusted { .. } => "untrusted",
            AgentError::State(_) => "state",
            AgentError::Usage(_) => "usage",
        }
    }
}

/// Names the server once, then what happened.
impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentError::Transport { server, detail } => write!(f, "{server}: {detail}"),
            AgentError::Refused {
                server,
                status,
                code,
                message,
            } => write!(f, "{server}: refused ({status} {code}): {message}"),
            AgentError::Busy {
                server,
                retry_after,
            } => write!(
                f,
                "{server}: the server is busy (503); retry after {}s",
                retry_after.as_secs()
            ),
            AgentError::Untrusted { server, detail } => {
                write!(f, "{server}: answer refused: {detail}")
            }
            AgentError::State(detail) | AgentError::Usage(detail) => f.write_str(detail),
        }
    }
}

impl std::error::Error for AgentError {}

impl From<AgentError> for String {
    fn from(error: AgentError) -> String {
        error.to_string()
    }
}
