use super::super::parse_workloads;
use super::*;

fn workload(name: &str, extra_spec: &str, container_extra: &str) -> String {
    format!(
        "apiVersion: drover.dev/v1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n{extra_spec}  \
         containers:\n    - name: main\n      image: x\n{container_extra}"
    )
}

fn parse(text: &str) -> Result<Vec<WorkloadSpec>, String> {
    parse_workloads("w.yaml", text).map_err(|e| e.to_string())
}

#[test]
fn probes_parse_with_kubernetes_defaults_and_fields() {
    let text = workload(
        "web",
        "",
        "      livenessProbe:\n        httpGet: {path: /healthz, port: 8080, httpHeaders: [{name: X-Probe, value: a b}]}\n        \
         periodSeconds: 5\n      readinessProbe:\n        tcpSocket: {port: 80}\n        successThreshold: 2\n      \
         startupProbe:\n        exec: {command: [cat, /tmp/ready]}\n        failureThreshold: 30\n        initialDelaySeconds: 2\n        timeoutSeconds: 3\n",
    );
    let c = &parse(&text).unwrap()[0].containers[0];
    let live = c.liveness_probe.clone().unwrap();
    assert_eq!(
        live.action,
        ProbeAction::HttpGet {
            path: "/healthz".into(),
            port: 8080,
            scheme: HttpScheme::Http,
            headers: vec![("X-Probe".into(), "a b".into())],
        }
    );
    assert_eq!(
        (live.period_s, live.timeout_s, live.failure_threshold),
        (5, 1, 3)
    );
    let ready = c.readiness_probe.clone().unwrap();
    assert_eq!(ready.action, ProbeAction::TcpSocket { port: 80 });
    assert_eq!((ready.success_threshold, ready.period_s), (2, 10));
    let start = c.startup_probe.clone().unwrap();
    assert_eq!(
        start.action,
        ProbeAction::Exec {
            command: vec!["cat".into(), "/tmp/ready".into()]
        }
    );
    assert_eq!(
        (
            start.failure_threshold,
            start.initial_delay_s,
            start.timeout_s
        ),
        (30, 2, 3)
    );
}

#[test]
fn bad_probes_are_refused_at_their_node() {
    let probe = |body: &str| workload("web", "", &format!("      livenessProbe:\n{body}"));
    let cases = [
        (
            "        periodSeconds: 5\n",
            "10:9: livenessProbe needs exactly one of exec, httpGet or tcpSocket",
        ),
        (
            "        exec: {command: [a]}\n        tcpSocket: {port: 1}\n",
            "10:9: livenessProbe needs exactly one",
        ),
        (
            "        exec: {command: []}\n",
            "10:25: livenessProbe.exec.command needs at least the program",
        ),
        (
            "        tcpSocket: {port: 0}\n",
            "10:27: livenessProbe: port must be 1–65535",
        ),
        ("        tcpSocket: {port: 70000}\n", "10:27: invalid u16"),
        (
            "        httpGet: {path: health, port: 80}\n",
            "10:25: livenessProbe.httpGet.path must start with '/'",
        ),
        (
            "        httpGet: {port: 80, httpHeaders: [{name: \"a:b\", value: c}]}\n",
            "10:43: livenessProbe.httpGet.httpHeaders: \"a:b\" is not a valid header",
        ),
        (
            "        httpGet: {port: 80, scheme: ftp}\n",
            "10:37: unknown variant `ftp`, expected one of HTTP, HTTPS",
        ),
        (
            "        tcpSocket: {port: 1}\n        periodSeconds: 0\n",
            "11:24: livenessProbe.periodSeconds must be at least 1",
        ),
        (
            "        tcpSocket: {port: 1}\n        successThreshold: 2\n",
            "11:27: livenessProbe.successThreshold must be 1",
        ),
        (
            "        tcpSocket: {port: 1}\n        host: x\n",
            "11:9: unknown field `host`",
        ),
    ];
    for (body, want) in cases {
        let e = parse(&probe(body)).unwrap_err();
        assert!(e.contains(want), "{body:?}: {e}");
        assert!(e.starts_with("w.yaml:"), "{e}");
    }
}

#[test]
fn depends_on_parses_on_workloads_and_containers() {
    let text = workload(
        "app",
        "  dependsOn: [{workload: db, condition: healthy}, {workload: cache}]\n",
        "      dependsOn: [{container: setup, condition: completed}]\n    - name: setup\n      image: x\n",
    );
    let w = &parse(&text).unwrap()[0];
    assert_eq!(
        w.depends_on,
        vec![
            Dependency {
                name: Name::new("db").unwrap(),
                condition: DependencyCondition::Healthy
            },
            Dependency {
                name: Name::new("cache").unwrap(),
                condition: DependencyCondition::Started
            },
        ]
    );
    assert_eq!(
        w.containers[0].depends_on,
        vec![Dependency {
            name: Name::new("setup").unwrap(),
            condition: DependencyCondition::Completed
        }]
    );
}

#[test]
fn dependency_cycles_and_unknown_containers_are_refused_with_a_location() {
    let own = workload("a", "  dependsOn: [{workload: a}]\n", "");
    assert_eq!(
        parse(&own).unwrap_err(),
        "w.yaml:6:26: workload \"a\" cannot depend on itself"
    );
    let two = format!(
        "{}---\n{}",
        workload("a", "  dependsOn: [{workload: b}]\n", ""),
        workload(
            "b",
            "  dependsOn: [{workload: a, condition: started}]\n",
            ""
        )
    );
    assert_eq!(
        parse(&two).unwrap_err(),
        "w.yaml:6:15: dependsOn forms a cycle: a → b → a"
    );
    let containers = workload(
        "a",
        "",
        "      dependsOn: [{container: side}]\n    - name: side\n      image: x\n      dependsOn: [{container: main}]\n",
    );
    assert_eq!(
        parse(&containers).unwrap_err(),
        "w.yaml:9:19: dependsOn forms a cycle: main → side → main"
    );
    let unknown = workload("a", "", "      dependsOn: [{container: nope}]\n");
    assert_eq!(
        parse(&unknown).unwrap_err(),
        "w.yaml:9:31: dependsOn: no container \"nope\" in this workload"
    );
    // A workload absent from the file is a wait, not an error.
    assert!(parse(&workload("a", "  dependsOn: [{workload: elsewhere}]\n", "")).is_ok());
}

#[test]
fn find_cycle_follows_only_known_nodes() {
    let n = |s: &str| Name::new(s).unwrap();
    let (a, b, c, d) = (n("a"), n("b"), n("c"), n("d"));
    let mut nodes: BTreeMap<&Name, Vec<&Name>> = BTreeMap::new();
    nodes.insert(&a, vec![&b, &d]);
    nodes.insert(&b, vec![&c]);
    nodes.insert(&c, vec![]);
    assert_eq!(find_cycle(&nodes), None);
    nodes.insert(&c, vec![&a]);
    assert_eq!(find_cycle(&nodes), Some(vec![&a, &b, &c, &a]));
}
