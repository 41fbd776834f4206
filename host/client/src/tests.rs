use std::time::Duration;

use super::*;

fn invalid(options: ClientOptions) -> String {
    match options.validate() {
        Err(ClientError::InvalidOptions(reason)) => reason,
        other => panic!("expected InvalidOptions, got {other:?}"),
    }
}

#[test]
fn keepalive_options() {
    let k = ClientOptions::default().validate().unwrap();
    assert_eq!(k.interval, None);

    let k = ClientOptions::default()
        .with_ping(Duration::from_secs(10), None)
        .validate()
        .unwrap();
    assert_eq!(k.interval, Some(Duration::from_secs(10)));
    assert_eq!(
        k.timeout,
        Duration::from_secs(10),
        "timeout defaults to the interval"
    );

    let k = ClientOptions::default()
        .with_ping(Duration::from_secs(10), Some(Duration::from_secs(3)))
        .validate()
        .unwrap();
    assert_eq!(k.timeout, Duration::from_secs(3));

    let reason = invalid(
        ClientOptions::default().with_ping(Duration::from_secs(1), Some(Duration::from_secs(2))),
    );
    assert!(reason.contains("must not exceed ping_interval"), "{reason}");
    let reason = invalid(ClientOptions {
        ping_timeout: Some(Duration::from_secs(1)),
        ..ClientOptions::default()
    });
    assert!(reason.contains("needs ping_interval"), "{reason}");
    invalid(ClientOptions::default().with_ping(Duration::ZERO, None));
    invalid(ClientOptions {
        connect_timeout: Duration::ZERO,
        ..ClientOptions::default()
    });
    invalid(ClientOptions {
        max_message_size: 0,
        ..ClientOptions::default()
    });
}

#[test]
fn normal_closes() {
    let info = |code, cause| CloseInfo {
        code,
        reason: String::new(),
        sent: None,
        cause,
    };
    assert!(info(Some(1000), CloseCause::ServerClosed).is_normal());
    assert!(info(Some(1001), CloseCause::ClientClosed).is_normal());
    assert!(info(None, CloseCause::ServerClosed).is_normal());
    assert!(!info(Some(4000), CloseCause::ServerClosed).is_normal());
    assert!(!info(Some(1011), CloseCause::ServerClosed).is_normal());
    assert!(!info(None, CloseCause::PingTimeout).is_normal());
    assert!(!info(None, CloseCause::ConnectionLost("eof".into())).is_normal());
}

#[tokio::test]
async fn connect_errors_before_any_io() {
    let e = connect("http://127.0.0.1:1/", ClientOptions::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("ws or wss"), "{e}");
    let e = connect(
        "ws://127.0.0.1:1/",
        ClientOptions::default().with_header("Connection", "close"),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, ClientError::InvalidHeader { .. }), "{e}");
}
