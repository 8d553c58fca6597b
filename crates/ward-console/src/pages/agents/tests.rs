use super::*;
use crate::pages::test_agents::agent;

fn filter(query: &str) -> Filter {
    Filter::parse(&Form::parse(query.as_bytes()))
}

#[test]
fn the_query_is_read_and_written_back() {
    let cases = [
        (
            "",
            Filter {
                page: 1,
                ..Filter::default()
            },
            "",
        ),
        (
            "q=web&online=true&tls_max=TLSv1.2&sort=name&dir=desc&page=3",
            Filter {
                search: Some("web".into()),
                online: Some(true),
                tls_max: Some("TLSv1.2".into()),
                sort: AgentSort::Hostname,
                descending: true,
                page: 3,
                ..Filter::default()
            },
            "q=web&online=true&tls_max=TLSv1.2&sort=name&dir=desc&page=3",
        ),
        // Unknown words fall back to the defaults; page 0 is page 1.
        (
            "sort=nonsense&page=0&online=maybe",
            Filter {
                page: 1,
                ..Filter::default()
            },
            "",
        ),
        (
            "group=My+Company%2FBranch",
            Filter {
                group: Some("My Company/Branch".into()),
                page: 1,
                ..Filter::default()
            },
            "group=My+Company%2FBranch",
        ),
    ];
    for (query, expected, written) in cases {
        let parsed = filter(query);
        assert_eq!(parsed, expected, "{query}");
        assert_eq!(
            parsed.query(parsed.sort, parsed.descending, parsed.page),
            written,
            "{query}"
        );
    }
}

#[test]
fn a_wrong_version_is_refused_naming_the_field() {
    let error = filter("tls_max=TLSv9").operation_query(None).unwrap_err();
    assert_eq!(error.0, "tls_max");
    assert!(error.1.contains("TLSv9"), "{}", error.1);
    let query = filter("tls_max=TLSv1.1&pending=true")
        .operation_query(None)
        .unwrap();
    assert_eq!(query.tls_max, Some(TlsVersionName::Tls11));
    assert_eq!(query.pending, Some(true));
}

#[test]
fn a_page_is_asked_of_the_operation() {
    let cases = [
        // The query, the offset and limit of its page, the order and the direction.
        ("", Some(0), AgentSort::Id, false),
        (
            "page=3&sort=name&dir=desc",
            Some(100),
            AgentSort::Hostname,
            true,
        ),
        (
            "sort=last_seen&page=2",
            Some(50),
            AgentSort::LastSeen,
            false,
        ),
        ("sort=tls", Some(0), AgentSort::TlsVersion, false),
    ];
    for (query, offset, sort, descending) in cases {
        let parsed = filter(query);
        let asked = parsed.operation_query(Some(parsed.page)).unwrap();
        assert_eq!(asked.offset, offset, "{query}");
        assert_eq!(asked.limit, Some(PAGE_SIZE), "{query}");
        assert_eq!(asked.sort, Some(sort), "{query}");
        assert_eq!(asked.descending, Some(descending), "{query}");
        // The CSV asks for every page.
        let all = parsed.operation_query(None).unwrap();
        assert_eq!((all.offset, all.limit), (None, None), "{query}");
    }
    let searched = filter("q=web&stack=ab").operation_query(Some(1)).unwrap();
    assert_eq!(searched.search.as_deref(), Some("web"));
    assert_eq!(searched.stack.as_deref(), Some("ab"));
}

#[test]
fn pages_are_counted_from_the_total() {
    for (total, pages) in [(0, 1), (1, 1), (50, 1), (51, 2), (1_000_000, 20_000)] {
        assert_eq!(pages_of(total), pages, "{total}");
    }
}

#[test]
fn csv_quotes_what_needs_it_and_defuses_formulas() {
    let agents = [
        agent(
            "a1",
            "plain",
            Some("https"),
            Some("TLSv1.2"),
            &["TLSv1.2", "TLSv1"],
            true,
            false,
            None,
        ),
        agent(
            "a2",
            "with, comma \"and\" quotes",
            None,
            None,
            &[],
            false,
            true,
            None,
        ),
        agent(
            "a3",
            "=HYPERLINK(\"x\")",
            None,
            None,
            &[],
            false,
            false,
            None,
        ),
    ];
    let csv = to_csv(&agents);
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(
        lines[0],
        "id,name,group,online,channel,tls_version,highest,stack,last_seen,pending"
    );
    assert_eq!(
        lines[1],
        "a1,plain,My Company,true,https,TLSv1.2,TLSv1.2,,,false"
    );
    assert_eq!(
        lines[2],
        "a2,\"with, comma \"\"and\"\" quotes\",My Company,false,,,,,,true"
    );
    assert_eq!(
        lines[3],
        "a3,\"'=HYPERLINK(\"\"x\"\")\",My Company,false,,,,,,false"
    );
    assert_eq!(
        lines.len(),
        5,
        "one line per agent and the header, each ended by CRLF"
    );
}
