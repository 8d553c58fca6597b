//! A site's database as one file and back, through PostgreSQL's own tools: `pg_dump
//! --format=custom` (one consistent snapshot, whatever the servers write meanwhile) and
//! `pg_restore --single-transaction` into an empty database (all of it or nothing).
//!
//! The connection string goes to the tools without its password, which travels in
//! `PGPASSWORD` instead: a command line is visible to every user of the host.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{PgStore, Probe};
use crate::StoreError;

/// The table whose presence makes a dump ward's.
const MARK: &str = "ward_schema";

/// Writes one consistent snapshot of the database at `url` to `out` (which must not exist).
pub fn dump(url: &str, out: &Path) -> Result<(), StoreError> {
    let (url, password) = split_password(url);
    let output = run(
        Command::new(tool("pg_dump")?)
            .args(["--format=custom", "--no-owner", "--no-privileges"])
            .arg(format!("--dbname={url}"))
            .arg(format!("--file={}", out.display())),
        password.as_deref(),
    )?;
    said("pg_dump", &output)?;
    check(out)
}

/// Checks that `file` is a dump `pg_restore` reads and that it holds a ward site.
pub fn check(file: &Path) -> Result<(), StoreError> {
    let output = run(
        Command::new(tool("pg_restore")?).arg("--list").arg(file),
        None,
    )?;
    said("pg_restore --list", &output)?;
    let listing = String::from_utf8_lossy(&output.stdout);
    let ours = listing
        .lines()
        .any(|line| line.contains(" TABLE ") && line.split_whitespace().any(|word| word == MARK));
    if !ours {
        return Err(StoreError::Invalid(format!(
            "{}: a PostgreSQL dump, but not of a ward site (no {MARK} table)",
            file.display()
        )));
    }
    Ok(())
}

/// Restores the dump `from` into the database at `url`, which must be empty: in one
/// transaction, so a failure leaves it empty. A database that holds a ward site or other
/// tables is refused and left as it is.
pub fn restore(url: &str, from: &Path) -> Result<(), StoreError> {
    check(from)?;
    match PgStore::probe(url)? {
        Probe::Empty => {}
        Probe::Site => {
            return Err(StoreError::Conflict(
                "the database holds a ward site already: restoring the backup's database there \
                 would undo every change made since (restore into an empty database, or restore \
                 the data dir alone: it takes the site's files when it starts)"
                    .into(),
            ))
        }
        Probe::Foreign { schema, tables } => {
            return Err(StoreError::Conflict(format!(
                "the database holds {tables} table(s) in schema '{schema}' that are not ward's: \
                 restore into an empty database"
            )))
        }
    }
    let (url, password) = split_password(url);
    let output = run(
        Command::new(tool("pg_restore")?)
            .args([
                "--no-owner",
                "--no-privileges",
                "--single-transaction",
                "--exit-on-error",
            ])
            .arg(format!("--dbname={url}"))
            .arg(from),
        password.as_deref(),
    )?;
    said("pg_restore", &output)
}

fn run(command: &mut Command, password: Option<&str>) -> Result<Output, StoreError> {
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    command.output().map_err(|e| {
        StoreError::Database(format!("{}: {e}", command.get_program().to_string_lossy()))
    })
}

/// The tool's failure, in its own words.
fn said(what: &str, output: &Output) -> Result<(), StoreError> {
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(StoreError::Database(format!(
        "{what} failed ({}): {}",
        output.status,
        stderr.trim()
    )))
}

/// A PostgreSQL client tool: on `PATH`, else the newest of Debian's
/// `/usr/lib/postgresql/N/bin`.
fn tool(name: &str) -> Result<PathBuf, StoreError> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    if let Some(found) = on_path {
        return Ok(found);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let candidate = entry.path().join("bin").join(name);
            candidate.is_file().then_some((version, candidate))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, path)| path).ok_or_else(|| {
        StoreError::Database(format!(
            "{name} not found (on PATH or in /usr/lib/postgresql/*/bin): install PostgreSQL's \
             client tools (Debian: postgresql-client)"
        ))
    })
}

/// A connection string without its password, and the password (percent-decoded in a URL).
/// Both forms libpq reads: `postgres://user:secret@host/db?...` and `key=value` words.
pub fn split_password(url: &str) -> (String, Option<String>) {
    if let Some(scheme_end) = ["postgres://", "postgresql://"]
        .iter()
        .find(|scheme| url.starts_with(**scheme))
        .map(|scheme| scheme.len())
    {
        let rest = &url[scheme_end..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let mut password = None;
        let authority = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => match userinfo.split_once(':') {
                Some((user, secret)) => {
                    password = Some(percent_decode(secret));
                    format!("{user}@{hosts}")
                }
                None => authority.to_string(),
            },
            None => authority.to_string(),
        };
        // A password given as a query parameter.
        let tail = match tail.split_once('?') {
            Some((path, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| match pair.strip_prefix("password=") {
                        Some(secret) => {
                            password = Some(percent_decode(secret));
                            false
                        }
                        None => true,
                    })
                    .collect();
                if kept.is_empty() {
                    path.to_string()
                } else {
                    format!("{path}?{}", kept.join("&"))
                }
            }
            None => tail.to_string(),
        };
        return (format!("{}{authority}{tail}", &url[..scheme_end]), password);
    }
    // key=value words; a value may be single-quoted, with \' and \\ inside.
    let mut kept = Vec::new();
    let mut password = None;
    let mut chars = url.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut word = String::new();
        let mut value = String::new();
        let mut in_value = false;
        let mut quoted = false;
        while let Some(c) = chars.next() {
            if !in_value {
                if c == '=' {
                    in_value = true;
                    while chars.peek().is_some_and(|c| c.is_whitespace()) {
                        chars.next();
                    }
                    if chars.peek() == Some(&'\'') {
                        chars.next();
                        quoted = true;
                    }
                } else if !c.is_whitespace() {
                    word.push(c);
                }
                continue;
            }
            match c {
                '\\' => {
                    if let Some(next) = chars.next() {
                        value.push(next);
                    }
                }
                '\'' if quoted => break,
                c if c.is_whitespace() && !quoted => break,
                c => value.push(c),
            }
        }
        if word.trim() == "password" {
            password = Some(value);
        } else {
            let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push(format!("{}='{escaped}'", word.trim()));
        }
    }
    (kept.join(" "), password)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(byte) = u8::from_str_radix(hex, 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_leaves_the_connection_string_for_the_environment() {
        let table: &[(&str, &str, Option<&str>)] = &[
            (
                "postgres://ward:s%40cret@db1:5432,db2:5432/ward?target_session_attrs=read-write",
                "postgres://ward@db1:5432,db2:5432/ward?target_session_attrs=read-write",
                Some("s@cret"),
            ),
            (
                "postgresql://ward@127.0.0.1/ward",
                "postgresql://ward@127.0.0.1/ward",
                None,
            ),
            (
                "postgres://127.0.0.1:5433/site?password=p%26q&sslmode=disable",
                "postgres://127.0.0.1:5433/site?sslmode=disable",
                Some("p&q"),
            ),
            ("postgres://ward:x@h", "postgres://ward@h", Some("x")),
            (
                "host=127.0.0.1 port=5433 user=ward password=secret dbname=site",
                "host='127.0.0.1' port='5433' user='ward' dbname='site'",
                Some("secret"),
            ),
            (
                "host=db user=ward password=it\\'s dbname='my site'",
                "host='db' user='ward' dbname='my site'",
                Some("it's"),
            ),
            (
                "host=db password='a b\\'c' dbname=x",
                "host='db' dbname='x'",
                Some("a b'c"),
            ),
        ];
        for (given, without, password) in table {
            let (url, secret) = split_password(given);
            assert_eq!(&url, without, "{given}");
            assert_eq!(secret.as_deref(), *password, "{given}");
        }
    }
}
