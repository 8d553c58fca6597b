//! The agents query, built once for both engines: what [`AgentFilter`] keeps, in the order it
//! asks, one page of it, and how many it keeps in all. Each engine supplies only its
//! [`Dialect`] (placeholders, a list parameter) and binds the [`Param`]s its way, so SQLite and
//! PostgreSQL cannot drift apart on what a filter means; the conformance suite checks both.
//!
//! Everything is done where the rows are: a page of a million agents reads fifty rows (the
//! default order walks the primary key), and the count reads an index.

use crate::codec::tls_rank;
use crate::fleet::{AgentFilter, AgentOrder, Presence};

/// A value bound to a placeholder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Param {
    Int(i64),
    Text(String),
    /// A list, for [`Dialect::in_list`].
    Ints(Vec<i64>),
    Texts(Vec<String>),
}

/// What differs between the engines' SQL.
pub(crate) trait Dialect {
    /// The placeholder of the `n`th parameter (from 1).
    fn placeholder(&self, n: usize) -> String;
    /// `column` is one of the list bound at `placeholder` ([`Param::Ints`] or
    /// [`Param::Texts`]).
    fn in_list(&self, column: &str, placeholder: &str) -> String;
}

/// A statement and its parameters: the `n`th is placeholder `n` (both dialects number them, so
/// the text may name them in any order).
#[derive(Debug)]
pub(crate) struct Sql {
    pub text: String,
    pub params: Vec<Param>,
}

struct Builder<'d, D: Dialect> {
    dialect: &'d D,
    params: Vec<Param>,
    /// Common table expressions the statement needs (`name (columns) AS (...)`).
    ctes: Vec<String>,
    /// Joins after `FROM agents`.
    joins: Vec<String>,
    /// The online condition, once made (a filter and an order share it).
    online: Option<String>,
}

impl<'d, D: Dialect> Builder<'d, D> {
    fn new(dialect: &'d D) -> Self {
        Builder {
            dialect,
            params: Vec::new(),
            ctes: Vec::new(),
            joins: Vec::new(),
            online: None,
        }
    }

    fn bind(&mut self, param: Param) -> String {
        self.params.push(param);
        self.dialect.placeholder(self.params.len())
    }

    fn in_list(&mut self, column: &str, param: Param) -> String {
        let placeholder = self.bind(param);
        self.dialect.in_list(column, &placeholder)
    }

    /// `WITH ... SELECT columns FROM agents` and its joins.
    fn from(&self, columns: &str) -> String {
        let with = if self.ctes.is_empty() {
            String::new()
        } else {
            format!("WITH RECURSIVE {} ", self.ctes.join(", "))
        };
        let mut text = format!("{with}SELECT {columns} FROM agents");
        for join in &self.joins {
            text.push(' ');
            text.push_str(join);
        }
        text
    }

    /// Whether an agent is online by `presence`, as a condition that is never NULL. The
    /// groups whose threshold is not the default are a small table joined by group, so each
    /// agent costs one lookup however many intervals the tree has.
    fn online(&mut self, presence: &Presence) -> String {
        if let Some(online) = &self.online {
            return online.clone();
        }
        let mut rows = Vec::new();
        for (since_ms, groups) in &presence.since {
            for group in groups {
                let group = self.bind(Param::Int(*group));
                let since = self.bind(Param::Int(*since_ms));
                rows.push(format!(
                    "(CAST({group} AS BIGINT), CAST({since} AS BIGINT))"
                ));
            }
        }
        let default = self.bind(Param::Int(presence.default_since));
        let threshold = if rows.is_empty() {
            default
        } else {
            self.ctes.push(format!(
                "thresholds (gid, since) AS (VALUES {})",
                rows.join(", ")
            ));
            self.joins
                .push("LEFT JOIN thresholds ON thresholds.gid = agents.group_id".into());
            format!("COALESCE(thresholds.since, {default})")
        };
        let recent = format!("(last_checkin_ms IS NOT NULL AND last_checkin_ms >= {threshold})");
        let online = if presence.held.is_empty() {
            recent
        } else {
            let held = self.in_list("id", Param::Texts(presence.held.clone()));
            format!("({held} OR {recent})")
        };
        self.online = Some(online.clone());
        online
    }

    /// The conditions, or `None` when nothing can match (an empty group list).
    fn conditions(&mut self, filter: &AgentFilter) -> Option<String> {
        let mut conditions = vec!["1 = 1".to_string()];
        if filter.pending {
            conditions.push("acked_serial < serial".into());
        }
        if let Some(groups) = &filter.groups {
            if groups.is_empty() {
                return None;
            }
            conditions.push(self.in_list("group_id", Param::Ints(groups.clone())));
        }
        if let Some(max) = &filter.tls_max {
            let rank = self.bind(Param::Int(tls_rank(max)));
            conditions.push(format!("tls_rank <= {rank}"));
        }
        if let Some(before) = filter.offline_before_ms {
            let before = self.bind(Param::Int(before));
            conditions.push(format!(
                "(last_checkin_ms IS NULL OR last_checkin_ms < {before})"
            ));
        }
        if let Some(search) = &filter.search {
            let pattern = format!("%{}%", escape_like(&search.to_lowercase()));
            let id = self.bind(Param::Text(pattern.clone()));
            let hostname = self.bind(Param::Text(pattern));
            conditions.push(format!(
                "(lower(id) LIKE {id} ESCAPE '\\' OR lower(hostname) LIKE {hostname} ESCAPE '\\')"
            ));
        }
        if let Some(hello) = &filter.hello {
            let hello = self.bind(Param::Text(hello.clone()));
            conditions.push(format!("hello = {hello}"));
        }
        if let Some(wanted) = filter.online {
            let online = self.online(&filter.presence.clone().unwrap_or_default());
            conditions.push(if wanted {
                online
            } else {
                format!("NOT {online}")
            });
        }
        Some(conditions.join(" AND "))
    }

    /// The sort keys, ascending, ties by id.
    fn order(&mut self, filter: &AgentFilter) -> Vec<String> {
        // NULL first, in both engines (PostgreSQL puts it last by default).
        let nulls_first = |column: &str| {
            vec![
                format!("CASE WHEN {column} IS NULL THEN 0 ELSE 1 END"),
                column.to_string(),
            ]
        };
        let mut keys = match filter.order {
            AgentOrder::Id => Vec::new(),
            AgentOrder::Hostname => vec!["lower(hostname)".to_string()],
            AgentOrder::Group => {
                self.ctes.push(GROUP_PATHS.into());
                self.joins
                    .push("LEFT JOIN paths ON paths.gid = agents.group_id".into());
                nulls_first("paths.path")
            }
            AgentOrder::Online => {
                let online = self.online(&filter.presence.clone().unwrap_or_default());
                vec![format!("CASE WHEN {online} THEN 1 ELSE 0 END")]
            }
            AgentOrder::Channel => nulls_first("channel"),
            AgentOrder::TlsVersion => nulls_first("tls_version"),
            AgentOrder::Highest => vec!["tls_rank".to_string()],
            AgentOrder::LastCheckin => nulls_first("last_checkin_ms"),
            AgentOrder::Pending => {
                vec!["CASE WHEN acked_serial < serial THEN 1 ELSE 0 END".to_string()]
            }
        };
        keys.push("id".into());
        keys
    }
}

/// `text` with LIKE's wildcards (and the escape character) escaped by `\`.
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Every group's path (`parent/child`), for the order by group.
const GROUP_PATHS: &str = "paths (gid, path) AS (\
     SELECT id, name FROM groups WHERE parent IS NULL \
     UNION ALL SELECT groups.id, paths.path || '/' || groups.name \
     FROM groups JOIN paths ON groups.parent = paths.gid)";

/// `SELECT columns` of the agents `filter` keeps, in its order, from its offset, at most its
/// limit; `None` when none can match.
pub(crate) fn select(filter: &AgentFilter, columns: &str, dialect: &impl Dialect) -> Option<Sql> {
    let mut builder = Builder::new(dialect);
    let conditions = builder.conditions(filter)?;
    let keys = builder.order(filter);
    let direction = if filter.descending { " DESC" } else { "" };
    let order = keys
        .iter()
        .map(|key| format!("{key}{direction}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = format!(
        "{} WHERE {conditions} ORDER BY {order}",
        builder.from(columns)
    );
    if let Some(limit) = filter.limit {
        text.push_str(&format!(" LIMIT {}", limit.min(i64::MAX as usize)));
    }
    if filter.offset > 0 {
        if filter.limit.is_none() {
            // Both engines take an offset only after a limit.
            text.push_str(&format!(" LIMIT {}", i64::MAX));
        }
        text.push_str(&format!(" OFFSET {}", filter.offset.min(i64::MAX as usize)));
    }
    Some(Sql {
        text,
        params: builder.params,
    })
}

/// `SELECT count(*)` of the agents `filter` keeps (its order, offset and limit aside); `None`
/// when none can match.
pub(crate) fn count(filter: &AgentFilter, dialect: &impl Dialect) -> Option<Sql> {
    let mut builder = Builder::new(dialect);
    let conditions = builder.conditions(filter)?;
    Some(Sql {
        text: format!("{} WHERE {conditions}", builder.from("count(*)")),
        params: builder.params,
    })
}

/// The fleet in figures, one row per channel and negotiated version: how many agents, how many
/// online by `presence`, pending, with a post-quantum key exchange, reverted. One scan.
pub(crate) fn tally(presence: &Presence, dialect: &impl Dialect) -> Sql {
    let mut builder = Builder::new(dialect);
    let online = builder.online(presence);
    let counted = |condition: &str| format!("sum(CASE WHEN {condition} THEN 1 ELSE 0 END)");
    let columns = format!(
        "channel, tls_version, count(*), {}, {}, {}, {}",
        counted(&online),
        counted("acked_serial < serial"),
        counted("tls_group LIKE '%MLKEM%'"),
        counted("reverted_serial = serial"),
    );
    Sql {
        text: format!("{} GROUP BY channel, tls_version", builder.from(&columns)),
        params: builder.params,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Numbered;

    impl Dialect for Numbered {
        fn placeholder(&self, n: usize) -> String {
            format!("${n}")
        }
        fn in_list(&self, column: &str, placeholder: &str) -> String {
            format!("{column} = ANY({placeholder})")
        }
    }

    #[test]
    fn like_wildcards_are_taken_literally() {
        for (text, escaped) in [
            ("abc", "abc"),
            ("50%", "50\\%"),
            ("a_b", "a\\_b"),
            ("c:\\x", "c:\\\\x"),
        ] {
            assert_eq!(escape_like(text), escaped, "{text}");
        }
    }

    #[test]
    fn an_empty_group_list_matches_nothing() {
        let filter = AgentFilter {
            groups: Some(Vec::new()),
            ..AgentFilter::default()
        };
        assert!(select(&filter, "id", &Numbered).is_none());
        assert!(count(&filter, &Numbered).is_none());
    }

    #[test]
    fn placeholders_follow_the_parameters() {
        let filter = AgentFilter {
            groups: Some(vec![1, 2]),
            search: Some("Web_1".into()),
            online: Some(false),
            presence: Some(Presence {
                held: vec!["a".into()],
                default_since: 3000,
                since: vec![(1000, vec![1]), (2000, Vec::new())],
            }),
            order: AgentOrder::LastCheckin,
            descending: true,
            offset: 100,
            limit: Some(50),
            ..AgentFilter::default()
        };
        let sql = select(&filter, "id", &Numbered).unwrap();
        assert_eq!(
            sql.params,
            vec![
                Param::Ints(vec![1, 2]),
                Param::Text("%web\\_1%".into()),
                Param::Text("%web\\_1%".into()),
                // The threshold table: group 1 at 1000; then the default; then who is held.
                Param::Int(1),
                Param::Int(1000),
                Param::Int(3000),
                Param::Texts(vec!["a".into()]),
            ]
        );
        // Every placeholder is named in the text (in any order: both dialects number them).
        for n in 1..=7 {
            assert!(
                [")", " ", ","]
                    .iter()
                    .any(|end| sql.text.contains(&format!("${n}{end}"))),
                "${n} missing: {}",
                sql.text
            );
        }
        assert!(!sql.text.contains("$8"), "{}", sql.text);
        assert!(
            sql.text.starts_with(
                "WITH RECURSIVE thresholds (gid, since) AS (VALUES (CAST($4 AS BIGINT), CAST($5 AS BIGINT))) \
                 SELECT id FROM agents LEFT JOIN thresholds ON thresholds.gid = agents.group_id WHERE"
            ),
            "{}",
            sql.text
        );
        assert!(
            sql.text.ends_with(
                "ORDER BY CASE WHEN last_checkin_ms IS NULL THEN 0 ELSE 1 END DESC, \
                 last_checkin_ms DESC, id DESC LIMIT 50 OFFSET 100"
            ),
            "{}",
            sql.text
        );
        assert!(
            sql.text.contains(
                "NOT (id = ANY($7) OR (last_checkin_ms IS NOT NULL AND last_checkin_ms >= \
                 COALESCE(thresholds.since, $6)))"
            ),
            "{}",
            sql.text
        );
    }
}
