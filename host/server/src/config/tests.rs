use std::path::Path;

use super::*;

fn parse_in(dir: &Path, text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, &dir.join("wsbox.toml"))
}

fn temp_dir_with_module() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "wsbox-config-test-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("echo.wasm"), b"not really wasm").unwrap();
    dir
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn full_config_parses_with_units() {
    let dir = temp_dir_with_module();
    let cfg = parse_in(
        &dir,
        r#"
listen = "127.0.0.1:9000"
[server]
handshake_timeout = "3s"
max_header_bytes = "16KiB"
drain_time = 2
[runtime]
max_instances = 500
max_memory_per_instance = "256MiB"
epoch_tick = "5ms"
max_core_instances_per_component = 40
max_memories_per_component = 3
max_tables_per_component = 9

[[route]]
path = "/chat/(?P<room>\\w+)"
module = "echo.wasm"
max_message_size = "32MiB"
memory_limit = 100000000
cpu_time_per_event = 0.25
wall_time_per_call = "3s"
cpu_time_per_second = "200ms"
log_bytes_per_second = "1MiB"
"#,
    )
    .unwrap();
    assert_eq!(cfg.listen.port(), 9000);
    assert_eq!(cfg.server.handshake_timeout, Duration::from_secs(3));
    assert_eq!(cfg.server.max_header_bytes, 16 * 1024);
    assert_eq!(cfg.server.drain_time, Duration::from_secs(2));
    assert_eq!(cfg.runtime.max_instances, 500);
    assert_eq!(cfg.runtime.max_memory_per_instance, 256 << 20);
    assert_eq!(cfg.runtime.epoch_tick, Duration::from_millis(5));
    assert_eq!(cfg.runtime.max_core_instances_per_component, 40);
    assert_eq!(cfg.runtime.max_memories_per_component, 3);
    assert_eq!(cfg.runtime.max_tables_per_component, 9);
    let r = &cfg.routes[0];
    assert_eq!(r.limits.max_message_size, 32 << 20);
    assert_eq!(r.limits.memory_limit, 100_000_000);
    assert_eq!(r.limits.cpu_time_per_event, Duration::from_millis(250));
    assert_eq!(r.limits.wall_time_per_call, Duration::from_secs(3));
    assert_eq!(r.limits.cpu_time_per_second, Duration::from_millis(200));
    assert_eq!(r.limits.log_bytes_per_second, 1 << 20);
    assert_eq!(r.module, ModuleSource::File(dir.join("echo.wasm")));
}

#[test]
fn defaults_apply() {
    let dir = temp_dir_with_module();
    let cfg = parse_in(&dir, "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\n").unwrap();
    assert_eq!(cfg.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(cfg.routes[0].limits.max_message_size, 10 * 1024 * 1024);
}

fn err(text: &str) -> String {
    let dir = temp_dir_with_module();
    parse_in(&dir, text).unwrap_err().to_string()
}

#[test]
fn tenants_are_declared_and_their_routes_live_under_their_prefix() {
    let dir = temp_dir_with_module();
    let cfg = parse_in(
        &dir,
        r#"
[[tenant]]
name = "acme"
path_prefix = "/acme"
max_connections = 5
max_memory_total = "64MiB"
max_concurrent_calls = 1
log_lines_per_second = 50
log_bytes_per_second = "32KiB"
clock_resolution_ms = 10

[[route]]
tenant = "acme"
path = '/chat/(\w+)'
module = "echo.wasm"

[[route]]
path = "/e"
module = "echo.wasm"
"#,
    )
    .unwrap();
    let acme = &cfg.tenants[0];
    assert_eq!(acme.path_prefix.as_deref(), Some("/acme"));
    assert_eq!(acme.max_connections, Some(5));
    assert_eq!(
        acme.limits,
        TenantLimits {
            max_memory_total: Some(64 << 20),
            max_concurrent_calls: Some(1),
            log_lines_per_second: Some(50),
            log_bytes_per_second: Some(32 << 10),
            clock_resolution_ms: Some(10),
            max_subscriptions_per_connection: None,
            max_publishes_per_second: None,
            max_message_size: None,
            max_output_buffer: None,
            memory_limit: None,
            cpu_time_per_event_ms: None,
        }
    );
    assert_eq!(cfg.routes[0].tenant, "acme");
    assert_eq!(cfg.routes[0].pattern.as_str(), r"/acme/(?:chat/(\w+))");
    assert_eq!(cfg.routes[1].tenant, "default");
    assert_eq!(cfg.routes[1].pattern.as_str(), "/e");

    let route = "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\n";
    let e = err(&format!("{route}tenant = \"nobody\"\n"));
    assert!(
        e.contains("route[0].tenant") && e.contains("no tenant `nobody`"),
        "{e}"
    );
    let e = err(&format!(
        "[[tenant]]\nname = \"t\"\n{route}tenant = \"t\"\n"
    ));
    assert!(e.contains("has no path_prefix"), "{e}");
    let e = err(
        "[[tenant]]\nname = \"a\"\npath_prefix = \"/a\"\n[[tenant]]\nname = \"b\"\npath_prefix = \"/a/b\"\n[admin]\n",
    );
    assert!(
        e.contains("tenant[1].path_prefix") && e.contains("must not nest"),
        "{e}"
    );
    let e = err("[[tenant]]\nname = \"a\"\npath_prefix = \"a(\"\n[admin]\n");
    assert!(e.contains("must look like /name"), "{e}");
    let e = err("[[tenant]]\nname = \"a\"\nmax_connections = 0\n[admin]\n");
    assert!(
        e.contains("tenant[0].max_connections") && e.contains("at least 1"),
        "{e}"
    );
    let e = err("[[tenant]]\nname = \"a\"\n[[tenant]]\nname = \"a\"\n[admin]\n");
    assert!(e.contains("declared twice"), "{e}");
    let e = err("[[tenant]]\nname = \"default\"\npath_prefix = \"/d\"\n[admin]\n");
    assert!(e.contains("default tenant has no namespace"), "{e}");
}

#[test]
fn errors_name_file_line_and_key() {
    let e = err(
        "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\nmax_message_size = \"10 parsecs\"\n",
    );
    assert!(e.contains("wsbox.toml:4:"), "{e}");
    assert!(e.contains("route[0].max_message_size"), "{e}");
    assert!(e.contains("unknown size unit"), "{e}");

    let e = err("[[route]]\npath = \"/e(\"\nmodule = \"echo.wasm\"\n");
    assert!(
        e.contains(":2:") && e.contains("route[0].path") && e.contains("regular expression"),
        "{e}"
    );

    let e = err("[[route]]\npath = \"/e\"\nmodule = \"missing.wasm\"\n");
    assert!(e.contains(":3:") && e.contains("no such file"), "{e}");

    let e = err("listen = \"nowhere\"\n[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\n");
    assert!(e.contains(":1:") && e.contains("`listen`"), "{e}");

    let e = err("[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\nmax_message_size = \"2GiB\"\n");
    assert!(e.contains(":4:") && e.contains("at most 1GiB"), "{e}");
}

#[test]
fn unknown_keys_and_syntax_errors_are_reported_with_lines() {
    let e = err("[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\nmax_mesage_size = 5\n");
    assert!(e.contains("line 4") && e.contains("max_mesage_size"), "{e}");
    let e = err("[[route]\n");
    assert!(e.contains("line 1"), "{e}");
    let e = err("listen = \"127.0.0.1:1\"\n");
    assert!(e.contains("no routes"), "{e}");
}

#[test]
fn pubsub_settings_and_their_errors() {
    let dir = temp_dir_with_module();
    let cfg = parse_in(
            &dir,
            "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\nmax_backpressure = \"64KiB\"\nslow_consumer = \"close\"\npubsub_fanout = \"per_connection\"\n\
             [pubsub]\nmax_subscriptions_per_connection = 5\n\
             [[tenant]]\nname = \"acme\"\nmax_publishes_per_second = 7\n",
        )
        .unwrap();
    let r = &cfg.routes[0];
    assert_eq!(r.limits.max_backpressure, 64 * 1024);
    assert_eq!(r.limits.slow_consumer, SlowConsumerPolicy::Close);
    assert_eq!(r.limits.pubsub_fanout, Fanout::PerConnection);
    assert_eq!(
        cfg.pubsub.default_limits.max_subscriptions_per_connection,
        5
    );
    assert_eq!(cfg.tenants[0].limits.max_publishes_per_second, Some(7));
    assert_eq!(cfg.tenants[0].limits.max_subscriptions_per_connection, None);
    let defaults = parse_in(&dir, "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\n").unwrap();
    assert_eq!(defaults.routes[0].limits.max_backpressure, 256 * 1024);
    assert_eq!(
        defaults.routes[0].limits.slow_consumer,
        SlowConsumerPolicy::Drop
    );
    let _ = std::fs::remove_dir_all(&dir);

    let e = err("[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\nslow_consumer = \"wait\"\n");
    assert!(
        e.contains(":4:") && e.contains("route[0].slow_consumer"),
        "{e}"
    );
    let e = err("[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\npubsub_fanout = \"each\"\n");
    assert!(e.contains("route[0].pubsub_fanout"), "{e}");
    let e = err("[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\nmax_backpressure = 10\n");
    assert!(e.contains("at least 1KiB"), "{e}");
    let e = err(
        "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\n[[tenant]]\nname = \"x\"\nmax_publishes_per_second = 0\n",
    );
    assert!(
        e.contains(":6:") && e.contains("tenant[0].max_publishes_per_second"),
        "{e}"
    );
}

#[test]
fn tenants_cap_message_size_and_output() {
    let dir = temp_dir_with_module();
    let cfg = parse_in(
            &dir,
            "[[tenant]]\nname = \"acme\"\npath_prefix = \"/acme\"\nmax_message_size = \"64KiB\"\nmax_output_buffer = \"1MiB\"\nmemory_limit = \"16MiB\"\ncpu_time_per_event_ms = 50\n[admin]\n",
        )
        .unwrap();
    let limits = &cfg.tenants[0].limits;
    assert_eq!(
        (limits.max_message_size, limits.max_output_buffer),
        (Some(64 << 10), Some(1 << 20))
    );
    assert_eq!(
        (limits.memory_limit, limits.cpu_time_per_event_ms),
        (Some(16 << 20), Some(50))
    );
    let e = parse_in(
        &dir,
        "[[tenant]]\nname = \"acme\"\npath_prefix = \"/acme\"\nmax_output_buffer = 0\n[admin]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("tenant[0].max_output_buffer"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_admin_api_takes_a_certificate_pair() {
    let dir = temp_dir_with_module();
    std::fs::write(dir.join("a.pem"), "x").unwrap();
    std::fs::write(dir.join("k.pem"), "x").unwrap();
    let cfg = parse_in(
        &dir,
        "[admin]\n[admin.tls]\ncert = \"a.pem\"\nkey = \"k.pem\"\n",
    )
    .unwrap();
    let tls = cfg.admin.unwrap().tls.unwrap();
    assert_eq!((tls.cert, tls.key), (dir.join("a.pem"), dir.join("k.pem")));
    let e = parse_in(
        &dir,
        "[admin]\n[admin.tls]\ncert = \"a.pem\"\nkey = \"missing.pem\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("admin.tls.key") && e.contains("missing.pem"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pubsub_backends_name_a_broker_and_say_what_is_wrong() {
    let route = "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\n";
    let dir = temp_dir_with_module();
    let cfg = parse_in(
        &dir,
        &format!("{route}[pubsub]\nbackend = \"nats://127.0.0.1:4222\"\nnode_id = 3\n"),
    )
    .unwrap();
    assert_eq!(
        cfg.pubsub.broker,
        Some(BrokerConfig {
            kind: BrokerKind::Nats,
            url: "nats://127.0.0.1:4222".into(),
            node_id: Some(3),
            channel_prefix: DEFAULT_CHANNEL_PREFIX.into(),
        })
    );
    let cfg = parse_in(
        &dir,
        &format!(
            "{route}[pubsub]\nbackend = \"redis://10.0.0.5:6379/2\"\nchannel_prefix = \"prod-eu\"\n"
        ),
    )
    .unwrap();
    let broker = cfg.pubsub.broker.unwrap();
    assert_eq!((broker.kind, broker.node_id), (BrokerKind::Redis, None));
    assert_eq!(broker.channel_prefix, "prod-eu");
    let local = parse_in(&dir, &format!("{route}[pubsub]\nbackend = \"local\"\n")).unwrap();
    assert_eq!(local.pubsub.broker, None);
    let _ = std::fs::remove_dir_all(&dir);

    for (toml, needles) in [
        (
            "backend = \"kafka://x\"",
            &["pubsub.backend", "\"local\"", "redis://", "nats://"][..],
        ),
        ("backend = \"rediss://x:6380\"", &["TLS to the broker"][..]),
        (
            "backend = \"redis://\"",
            &["names no host", "redis://127.0.0.1:6379"][..],
        ),
        (
            "backend = \"nats://h:4222\"\nnode_id = 0",
            &["pubsub.node_id", "1 to 65535"][..],
        ),
        (
            "backend = \"nats://h:4222\"\nnode_id = 70000",
            &["1 to 65535"][..],
        ),
        (
            "backend = \"nats://h:4222\"\nchannel_prefix = \"a.b\"",
            &["pubsub.channel_prefix", "letters, digits"][..],
        ),
        (
            "node_id = 2",
            &["pubsub.node_id", "only means something with a broker"][..],
        ),
    ] {
        let e = err(&format!("{route}[pubsub]\n{toml}\n"));
        for needle in needles {
            assert!(e.contains(needle), "{toml}: {e}");
        }
        assert!(
            e.contains(":5:") || e.contains(":6:"),
            "{toml}: no line in {e}"
        );
    }
}

#[test]
fn hibernation_settings() {
    let dir = temp_dir_with_module();
    let cfg = parse_in(
            &dir,
            "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\nhibernate_after = \"10s\"\nmax_attachment = \"4KiB\"\n[route.auto_response]\nrequest = \"ping\"\nresponse = \"pong\"\n",
        )
        .unwrap();
    let h = &cfg.routes[0].hibernation;
    assert_eq!(h.after, Some(Duration::from_secs(10)));
    assert_eq!(h.max_attachment, 4096);
    assert_eq!(
        h.auto_response,
        Some(AutoResponse {
            request: "ping".into(),
            response: "pong".into()
        })
    );
    // Off by default, with the 16 KiB attachment limit.
    let cfg = parse_in(&dir, "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\n").unwrap();
    assert_eq!(cfg.routes[0].hibernation, Hibernation::default());
    assert_eq!(cfg.routes[0].hibernation.after, None);
    assert_eq!(cfg.routes[0].hibernation.max_attachment, 16 * 1024);
    let e = err("[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\nmax_attachment = \"2MiB\"\n");
    assert!(
        e.contains("max_attachment") && e.contains("at most 1MiB"),
        "{e}"
    );
}

#[test]
fn hibernation_values_are_checked_by_one_set_of_rules() {
    // The rules config routes and admin-bound routes share.
    use wsbox_io::units::{DurationValue, SizeValue};
    assert_eq!(
        Hibernation::parse_after(&DurationValue::Text("100ms".into())),
        Ok(Some(Duration::from_millis(100)))
    );
    assert_eq!(
        Hibernation::parse_after(&DurationValue::Seconds(2.5)),
        Ok(Some(Duration::from_millis(2500)))
    );
    assert_eq!(
        Hibernation::parse_after(&DurationValue::Seconds(0.0)),
        Ok(None),
        "0 = off"
    );
    assert!(Hibernation::parse_after(&DurationValue::Text("10 parsecs".into())).is_err());
    assert_eq!(
        Hibernation::parse_max_attachment(&SizeValue::Text("1MiB".into())),
        Ok(1 << 20)
    );
    assert_eq!(
        Hibernation::parse_max_attachment(&SizeValue::Bytes(0)),
        Ok(0)
    );
    let e = Hibernation::parse_max_attachment(&SizeValue::Bytes((1 << 20) + 1)).unwrap_err();
    assert!(e.contains("at most 1MiB"), "{e}");
    assert!(Hibernation::parse_max_attachment(&SizeValue::Bytes(-1)).is_err());
    assert_eq!(
        AutoResponse::new("", "pong"),
        Err(("request", "must not be empty".to_string()))
    );
    assert_eq!(
        AutoResponse::new("ping", ""),
        Ok(AutoResponse {
            request: "ping".into(),
            response: String::new()
        })
    );
    // The config file names the key at fault.
    let e = err(
        "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\n[route.auto_response]\nrequest = \"\"\nresponse = \"x\"\n",
    );
    assert!(
        e.contains("route[0].auto_response.request") && e.contains("must not be empty"),
        "{e}"
    );
}

#[test]
fn origin_and_keepalive_settings() {
    let dir = temp_dir_with_module();
    let cfg = parse_in(
            &dir,
            "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\nallowed_origins = [\"https://*.example.com\", \"http://localhost:3000\"]\norigin_policy = \"enforce\"\nping_interval = \"20s\"\nping_timeout = 5\n",
        )
        .unwrap();
    let r = &cfg.routes[0];
    // Both entries were compiled into the policy, and nothing else.
    assert!(
        r.origin
            .allows(Some("https://app.example.com"), Some("wsbox.test"))
    );
    assert!(
        r.origin
            .allows(Some("http://localhost:3000"), Some("wsbox.test"))
    );
    assert!(
        !r.origin
            .allows(Some("https://example.net"), Some("wsbox.test"))
    );
    assert!(r.origin.enforce);
    assert_eq!(r.keepalive.ping_interval, Some(Duration::from_secs(20)));
    assert_eq!(
        r.keepalive.effective_timeout(),
        Some(Duration::from_secs(5))
    );

    let cfg = parse_in(
        &dir,
        "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\nping_interval = 3\n",
    )
    .unwrap();
    assert_eq!(
        cfg.routes[0].keepalive.effective_timeout(),
        Some(Duration::from_secs(3))
    );
}

#[test]
fn compression_absent_is_off_empty_is_on_and_values_are_checked() {
    let dir = temp_dir_with_module();
    let base = "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\n";
    let cfg = parse_in(&dir, base).unwrap();
    assert!(cfg.routes[0].compression.is_none());
    let cfg = parse_in(&dir, &format!("{base}[route.compression]\n")).unwrap();
    assert_eq!(cfg.routes[0].compression, Some(DeflateConfig::default()));
    let cfg = parse_in(
            &dir,
            &format!("{base}[route.compression]\ncompression_level = 1\nmem_level = 4\nclient_max_window_bits = 10\nserver_no_context_takeover = true\nmin_size = \"1KiB\"\n"),
        )
        .unwrap();
    let c = cfg.routes[0].compression.clone().unwrap();
    assert_eq!(
        (c.compression_level, c.mem_level, c.client_max_window_bits),
        (1, 4, 10)
    );
    assert!(c.server_no_context_takeover && !c.client_no_context_takeover);
    assert_eq!(c.min_compress_size, 1024);
    let e = err(&format!(
        "{base}[route.compression]\nserver_max_window_bits = 16\n"
    ));
    assert!(
        e.contains(":5:") && e.contains("route[0].compression.server_max_window_bits"),
        "{e}"
    );
}

#[test]
fn keepalive_and_origin_errors() {
    let base = "[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\n";
    let e = err(&format!("{base}ping_interval = 5\nping_timeout = 10\n"));
    assert!(
        e.contains(":5:") && e.contains("may not exceed the interval"),
        "{e}"
    );
    let e = err(&format!("{base}ping_timeout = 10\n"));
    assert!(e.contains("needs ping_interval"), "{e}");
    let e = err(&format!("{base}origin_policy = \"lax\"\n"));
    assert!(e.contains(":4:") && e.contains("origin_policy"), "{e}");
    let e = err(&format!("{base}allowed_origins = [\"example.com\"]\n"));
    assert!(e.contains(":4:") && e.contains("allowed_origins"), "{e}");
}

#[test]
fn memory_limit_must_fit_the_pool() {
    let e = err(
        "[runtime]\nmax_memory_per_instance = \"16MiB\"\n[[route]]\npath = \"/e\"\nmodule = \"echo.wasm\"\nmemory_limit = \"32MiB\"\n",
    );
    assert!(
        e.contains(":6:") && e.contains("max_memory_per_instance"),
        "{e}"
    );
}

#[test]
fn compiled_cache_max_size_takes_a_size() {
    let dir = temp_dir_with_module();
    let route = "[[route]]\npath = \"/echo\"\nmodule = \"echo.wasm\"\n";
    let cfg = parse_in(&dir, route).unwrap();
    assert_eq!(cfg.runtime.compiled_cache_max_size, 2 << 30);
    let text = format!("[runtime]\ncompiled_cache_max_size = \"500MiB\"\n{route}");
    let cfg = parse_in(&dir, &text).unwrap();
    assert_eq!(cfg.runtime.compiled_cache_max_size, 500 << 20);
    let text = format!("[runtime]\nmemory_keep_resident = \"4MiB\"\n{route}");
    assert_eq!(
        parse_in(&dir, &text).unwrap().runtime.memory_keep_resident,
        4 << 20
    );
    let text = format!("[runtime]\ncompiled_cache_max_size = \"lots\"\n{route}");
    let e = parse_in(&dir, &text).unwrap_err().to_string();
    assert!(e.contains(":2: `runtime.compiled_cache_max_size`"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_build_section_is_checked_and_otherwise_ignored() {
    let dir = temp_dir_with_module();
    let route = "[[route]]\npath = \"/echo\"\nmodule = \"echo.wasm\"\n";
    let ok = format!("[build]\nlanguage = \"python\"\nname = \"echo\"\n{route}");
    assert_eq!(parse_in(&dir, &ok).unwrap().routes.len(), 1);
    let bad = format!("[build]\nlanguage = \"cobol\"\nname = \"echo\"\n{route}");
    assert_eq!(
        parse_in(&dir, &bad).unwrap_err().to_string(),
        format!(
            "{}:2: `build.language`: unknown language `cobol`: wsbox supports rust, python, javascript, go, c",
            dir.join("wsbox.toml").display()
        )
    );
    let bad = format!("[build]\nlanguage = \"c\"\nname = \"a b\"\n{route}");
    let e = parse_in(&dir, &bad).unwrap_err().to_string();
    assert!(
        e.contains(":3: `build.name`: `a b` cannot name a handler"),
        "{e}"
    );
    let bad = format!("[build]\nlanguage = \"c\"\nname = \"x\"\nout = \"y\"\n{route}");
    let e = parse_in(&dir, &bad).unwrap_err().to_string();
    assert!(e.contains("unknown field `out`"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
