use super::*;
use crate::pages::test_agents::agent;

fn filter(query: &str) -> Filter {
    Filter::parse(&Form::parse(query.as_bytes()))
}

fn fleet(n: usize) -> Vec<Agent> {
    (0..n)
        .map(|i| {
            let version = ["TLSv1", "TLSv1.2", "TLSv1.3"][i % 3];
            agent(
                &format!("id{i:04}"),
                &format!("Host-{:04}", n - i),
                Some("https"),
                Some(version),
                &[version],
                i % 2 == 0,
                false,
                Some(&format!("2026-12-04T16:{:02}:00Z", i % 60)),
            )
        })
        .collect()
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
                sort: Sort::Name,
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
    let error = filter("tls_max=TLSv9").operation_query().unwrap_err();
    assert_eq!(error.0, "tls_max");
    assert!(error.1.contains("TLSv9"), "{}", error.1);
    let query = filter("tls_max=TLSv1.1&pending=true")
        .operation_query()
        .unwrap();
    assert_eq!(query.tls_max, Some(TlsVersionName::Tls11));
    assert_eq!(query.pending, Some(true));
}

#[test]
fn a_page_is_cut_from_the_whole_order() {
    let agents = fleet(120);
    // Each case: the query, the total, the page shown, the first and last ids of the page.
    let cases = [
        ("", 120, 1, "id0000", "id0049"),
        ("page=3", 120, 3, "id0100", "id0119"),
        ("page=9", 120, 3, "id0100", "id0119"),
        ("dir=desc", 120, 1, "id0119", "id0070"),
        // Names run the other way from ids.
        ("sort=name", 120, 1, "id0119", "id0070"),
        ("sort=name&page=2", 120, 2, "id0069", "id0020"),
        ("q=host-000", 9, 1, "id0111", "id0119"),
        ("q=ID011", 10, 1, "id0110", "id0119"),
        ("q=nobody", 0, 1, "", ""),
    ];
    for (query, total, page, first, last) in cases {
        let (counted, shown, rows) = select(agents.clone(), &filter(query));
        assert_eq!((counted, shown), (total, page), "{query}");
        assert_eq!(rows.first().map_or("", |a| a.id.as_str()), first, "{query}");
        assert_eq!(rows.last().map_or("", |a| a.id.as_str()), last, "{query}");
    }
    // By TLS version, ties by id: the 40 TLSv1 agents first.
    let (_, _, rows) = select(agents.clone(), &filter("sort=tls"));
    assert!(rows[..40]
        .iter()
        .all(|a| a.tls_version.as_deref() == Some("TLSv1")));
    assert!(rows[40..]
        .iter()
        .all(|a| a.tls_version.as_deref() == Some("TLSv1.2")));
    let ids: Vec<&str> = rows[..3].iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["id0000", "id0003", "id0006"]);
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
