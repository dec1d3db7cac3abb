//! What the dial-out benchmarks (`dial_load`, `dial_latency`) share: free loopback ports and a
//! plain dial request, as the REST layer would hand it to the bridge.

use std::time::{Duration, SystemTime};

use rest_api::{DialRequest, SipOptions};
use session::{ClientGrant, ProjectId, Role, SessionId};

/// A port free for both UDP and TCP on 127.0.0.1 (for sipp's signalling or a media socket).
pub fn free_port() -> u16 {
    loop {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let p = s.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// A dial of `uri` into `session` with no options (no SRTP, no video, everything heard).
pub fn dial_request(project: &ProjectId, session: &SessionId, uri: String) -> DialRequest {
    let grant = ClientGrant {
        role: Role::Publisher,
        connection_data: None,
        layout_classes: vec![],
        expires: SystemTime::now() + Duration::from_secs(3600),
    };
    let sip = SipOptions {
        uri,
        from: None,
        headers: vec![],
        auth: None,
        secure: false,
        video: false,
        observe_force_mute: false,
        streams: None,
    };
    DialRequest { project: project.clone(), session: session.clone(), grant, sip }
}
