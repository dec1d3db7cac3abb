//! RFC 4475 "SIP Torture Test Messages" against the message parser.
//!
//! The messages live byte-exact in `tests/data/rfc4475/` (decoded from the
//! RFC's appendix A archive; see the README there). Section 3.1.1 messages
//! must parse, validate and survive a serialise/re-parse round trip; every
//! section 3.1.2 message gets an explicit verdict of our strict parser; the
//! section 3.2 to 3.4 messages (and the archive's extra `test.dat`) get
//! theirs too. Whatever the verdict, no input may panic the parser, the
//! stream framer or the typed accessors.

use sip_signaling::{
    parse_message, unescape, Frame, Framing, Header, HeaderName, Host, Limits, Message, Method, NameAddr, ParseError,
    StartLine, StreamFramer, Uri, Via,
};
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Every file of the corpus: name, RFC section, and the file's size and
/// FNV-1a 64 hash, which catch any line-ending conversion on checkout.
const CORPUS: &[(&str, &str, usize, u64)] = &[
    // 3.1.1 Valid messages.
    ("wsinv", "3.1.1.1", 1001, 0xc705_1bc6_0630_dd66),
    ("intmeth", "3.1.1.2", 641, 0xefc5_a663_9689_c901),
    ("esc01", "3.1.1.3", 543, 0xec3a_89e6_cfc7_f7d3),
    ("escnull", "3.1.1.4", 359, 0xb56d_30c7_64df_da07),
    ("esc02", "3.1.1.5", 439, 0x62cb_8749_1c37_4bac),
    ("lwsdisp", "3.1.1.6", 255, 0xfddf_3454_68a3_c69e),
    ("longreq", "3.1.1.7", 3515, 0x826a_0e84_7279_a9cf),
    ("dblreq", "3.1.1.8", 750, 0x08d5_9c7b_17b5_1898),
    ("semiuri", "3.1.1.9", 380, 0xa56a_f3bf_c998_4ba8),
    ("transports", "3.1.1.10", 503, 0xb5ee_333f_3786_4986),
    ("mpart01", "3.1.1.11", 1290, 0x79c7_ba2d_a508_b7cc),
    ("unreason", "3.1.1.12", 526, 0xc247_cf62_22f3_66e8),
    ("noreason", "3.1.1.13", 274, 0xc7dd_437a_2330_c017),
    // 3.1.2 Invalid messages.
    ("badinv01", "3.1.2.1", 472, 0xabaf_1cdd_ce2e_a338),
    ("clerr", "3.1.2.2", 498, 0x048f_d6b0_ed5a_1a75),
    ("ncl", "3.1.2.3", 486, 0x1f9b_bbde_223c_b2c6),
    ("scalar02", "3.1.2.4", 476, 0xc23f_618a_952b_0e96),
    ("scalarlg", "3.1.2.5", 385, 0x5e9d_bcfa_9e8e_388a),
    ("quotbal", "3.1.2.6", 485, 0x62a5_5772_80c5_0f2f),
    ("ltgtruri", "3.1.2.7", 452, 0x2cee_b62f_1169_4e71),
    ("lwsruri", "3.1.2.8", 541, 0xc1c1_ec17_518c_cf31),
    ("lwsstart", "3.1.2.9", 506, 0xdf4b_3172_6f40_2355),
    ("trws", "3.1.2.10", 327, 0x5a81_eef6_f34f_1cb2),
    ("escruri", "3.1.2.11", 550, 0x0705_37f8_4f57_dd85),
    ("baddate", "3.1.2.12", 532, 0x265f_9e6d_86b5_ba08),
    ("regbadct", "3.1.2.13", 307, 0xa0da_b8bf_daeb_d906),
    ("badaspec", "3.1.2.14", 346, 0x7e1c_faec_b785_47af),
    ("baddn", "3.1.2.15", 331, 0xf268_e8fe_9ff9_2bc4),
    ("badvers", "3.1.2.16", 291, 0x283e_d8cf_decc_ee32),
    ("mismatch01", "3.1.2.17", 236, 0x124d_dd18_f0b9_a13f),
    ("mismatch02", "3.1.2.18", 449, 0x6416_42bf_6e8f_b847),
    ("bigcode", "3.1.2.19", 332, 0x0fe1_1f07_c50a_a700),
    // 3.2 Transaction layer semantics.
    ("badbranch", "3.2.1", 262, 0x6c8e_3cc3_9291_2213),
    // 3.3 Application-layer semantics.
    ("insuf", "3.3.1", 304, 0xaa9a_527d_3841_118a),
    ("unkscm", "3.3.2", 291, 0x1d6f_6220_5555_9894),
    ("novelsc", "3.3.3", 277, 0x8606_5524_27ad_773c),
    ("unksm2", "3.3.4", 282, 0xbc48_aaa6_ed28_9a4e),
    ("bext01", "3.3.5", 381, 0xcf32_cb29_9e3b_2855),
    ("invut", "3.3.6", 391, 0x3a27_0866_ea0c_1a10),
    ("regaut01", "3.3.7", 304, 0x917f_c9d7_d8cb_b377),
    ("multi01", "3.3.8", 643, 0xcace_3d3f_c5eb_ec32),
    ("mcl01", "3.3.9", 382, 0x1b86_71ee_4a65_65dc),
    ("bcast", "3.3.10", 516, 0x6864_8411_7d5d_d3b5),
    ("zeromf", "3.3.11", 272, 0x68b5_a926_f0d5_a7ce),
    ("cparam01", "3.3.12", 321, 0x9bd8_d4c0_2b2b_48c5),
    ("cparam02", "3.3.13", 311, 0x90bf_d4f7_1bb4_6b30),
    ("regescrt", "3.3.14", 302, 0x4c9a_f98d_7f22_4310),
    ("sdp01", "3.3.15", 494, 0xe25f_6ed4_0651_0a4a),
    // 3.4 Backward compatibility.
    ("inv2543", "3.4.1", 445, 0xa64b_d28b_9502_694a),
    // In the appendix A archive, described by no section.
    ("test", "-", 318, 0xe78e_8027_fa56_eef5),
];

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/rfc4475")
}

fn raw(name: &str) -> Vec<u8> {
    let path = data_dir().join(format!("{name}.dat"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn dgram(name: &str) -> Result<Message, ParseError> {
    parse_message(&raw(name), &Limits::default(), Framing::Datagram)
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// What re-parsing `m.to_bytes()` must give back: the same message except
/// that Content-Length is written once, last, with the body's length.
fn normalised(m: &Message) -> Message {
    let mut n = m.clone();
    n.headers.remove(&HeaderName::ContentLength);
    n.headers.push(HeaderName::ContentLength, m.body.len().to_string());
    n
}

/// Serialises, re-parses with both framings and through the stream framer,
/// and checks that nothing changed.
fn assert_round_trip(m: &Message) {
    let bytes = m.to_bytes();
    let expected = normalised(m);
    for framing in [Framing::Stream, Framing::Datagram] {
        let again = parse_message(&bytes, &Limits::default(), framing).expect("re-parse");
        assert_eq!(again, expected, "{framing:?}");
        again.validate().expect("re-parsed message validates");
        assert_eq!(again.to_bytes(), bytes, "serialisation is stable");
    }
    let mut framer = StreamFramer::new(Limits::default());
    framer.push(&bytes);
    assert_eq!(framer.next_frame().expect("frame"), Some(Frame::Message(bytes.clone())));
    assert_eq!(framer.next_frame().expect("nothing more"), None);
}

/// Parses a message the RFC calls well formed: it must parse as a datagram,
/// validate, round-trip, and have every Via / Contact / Route readable.
fn valid(name: &str) -> Message {
    let m = dgram(name).unwrap_or_else(|e| panic!("{name} must parse: {e}"));
    m.validate().unwrap_or_else(|e| panic!("{name} must validate: {e}"));
    for v in m.headers.values(&HeaderName::Via) {
        Via::parse(v).unwrap_or_else(|e| panic!("{name}: Via {v:?}: {e}"));
    }
    for h in [HeaderName::Contact, HeaderName::Route, HeaderName::RecordRoute] {
        m.name_addrs(&h).unwrap_or_else(|e| panic!("{name}: {h}: {e}"));
    }
    assert_round_trip(&m);
    m
}

fn request_uri(m: &Message) -> &Uri {
    match &m.start {
        StartLine::Request { uri, .. } => uri,
        StartLine::Response { .. } => panic!("not a request"),
    }
}

fn sip(uri: &Uri) -> &sip_signaling::SipUri {
    uri.as_sip().expect("a sip: URI")
}

fn header<'a>(m: &'a Message, name: &str) -> Option<&'a str> {
    m.headers.get(&HeaderName::parse(name))
}

fn vias(m: &Message) -> Vec<Via> {
    m.headers.values(&HeaderName::Via).map(|v| Via::parse(v).expect("via")).collect()
}

fn contacts(m: &Message) -> Vec<NameAddr> {
    m.name_addrs(&HeaderName::Contact).expect("contacts")
}

// ---------------------------------------------------------------------------
// The corpus itself.

#[test]
fn corpus_is_complete_and_byte_exact() {
    let mut on_disk: Vec<String> = std::fs::read_dir(data_dir())
        .expect("data dir")
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".dat"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = CORPUS.iter().map(|(n, ..)| format!("{n}.dat")).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "every .dat file has a verdict in this file");
    for &(name, _, size, hash) in CORPUS {
        let data = raw(name);
        assert_eq!(data.len(), size, "{name}: size");
        assert_eq!(fnv1a(&data), hash, "{name}: content hash");
        // CRLF throughout: no bare LF outside the bodies of the messages
        // that carry binary data.
        let head_end = data.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(data.len());
        let bare_lf = data[..head_end].iter().enumerate().any(|(i, &b)| b == b'\n' && (i == 0 || data[i - 1] != b'\r'));
        assert!(!bare_lf, "{name}: bare LF in the header section");
    }
}

// ---------------------------------------------------------------------------
// 3.1.1 Valid messages.

/// 3.1.1.1 A short tortuous INVITE: folding, LWS everywhere, mixed case
/// and compact names, empty Subject, unknown parameters and headers.
#[test]
fn wsinv() {
    let m = valid("wsinv");
    assert_eq!(m.method(), Some(&Method::Invite));
    let ruri = sip(request_uri(&m));
    assert_eq!(ruri.user.as_deref(), Some("vivekg"));
    assert_eq!(ruri.host, Host::Domain("chair-dnrc.example.com".into()));
    assert_eq!(ruri.params.get("unknownparam"), Some(None));
    let to = m.to().expect("to");
    assert!(!to.angle);
    assert_eq!(to.tag(), Some("1918181833n"));
    assert_eq!(sip(&to.uri).user.as_deref(), Some("vivekg"));
    let from = m.from().expect("from");
    assert_eq!(from.display.as_deref(), Some(r#"J Rosenberg \""#));
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(header(&m, "Max-Forwards"), Some("0068"));
    assert_eq!(header(&m, "Max-Forwards").map(str::parse::<u8>), Some(Ok(68)));
    assert_eq!(m.call_id(), Ok("wsinv.ndaksdj@192.0.2.1"));
    let cseq = m.cseq().expect("cseq");
    assert_eq!((cseq.seq, cseq.method), (9, Method::Invite));
    assert_eq!(m.body.len(), 150);
    assert_eq!(header(&m, "Subject"), Some(""));
    assert_eq!(header(&m, "NewFangledHeader"), Some("newfangled value continued newfangled value"));
    assert_eq!(header(&m, "UnknownHeaderWithUnusualValue"), Some(";;,,;;,;"));
    assert_eq!(header(&m, "Content-Type"), Some("application/sdp"));

    let v = vias(&m);
    assert_eq!(v.len(), 3);
    assert_eq!(
        (v[0].transport.as_str(), &v[0].host, v[0].branch()),
        ("UDP", &Host::V4(Ipv4Addr::new(192, 0, 2, 2)), Some("390skdjuw"))
    );
    assert_eq!(
        (v[1].transport.as_str(), &v[1].host, v[1].branch()),
        ("TCP", &Host::Domain("spindle.example.com".into()), Some("z9hG4bK9ikj8"))
    );
    assert_eq!(
        (v[2].transport.as_str(), &v[2].host, v[2].branch()),
        ("UDP", &Host::V4(Ipv4Addr::new(192, 168, 255, 111)), Some("z9hG4bK30239"))
    );
    assert_eq!(m.top_via().expect("top via"), v[0]);

    let route = m.name_addrs(&HeaderName::Route).expect("route");
    assert_eq!(route.len(), 1);
    let rp = &sip(&route[0].uri).params;
    assert_eq!(rp.get("lr"), Some(None));
    assert_eq!(rp.value("unknownwith"), Some("value"));
    assert_eq!(rp.get("unknown-no-value"), Some(None));

    let c = m.contact().expect("contact").expect("parses");
    assert_eq!(c.display.as_deref(), Some(r#"Quoted string """#));
    assert_eq!(c.params.value("newparam"), Some("newvalue"));
    assert_eq!(c.params.get("secondparam"), Some(None));
    assert_eq!(c.params.value("q"), Some("0.33"));
}

/// 3.1.1.2 Wide range of valid characters: token characters in the
/// method, an unusual Request-URI user part and password, a quoted NUL,
/// UTF-8 in a parameter and an extension header.
#[test]
fn intmeth() {
    const METHOD: &str = "!interesting-Method0123456789_*+`.%indeed'~";
    const USER: &str = "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*";
    let m = valid("intmeth");
    // `%` is no escape in a method: this is an extension method.
    assert_eq!(m.method(), Some(&Method::Extension(METHOD.into())));
    let ruri = sip(request_uri(&m));
    assert_eq!(ruri.user.as_deref(), Some(USER));
    assert_eq!(ruri.password.as_deref(), Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"));
    assert_eq!(ruri.host, Host::Domain("example.com".into()));
    assert!(ruri.params.0.is_empty());
    assert_eq!(ruri.headers, None);
    assert_eq!(m.top_via().expect("via").branch(), Some("z9hG4bK-.!%66*_+`'~"));
    let to = m.to().expect("to");
    assert_eq!(to.display.as_deref(), Some("BEL:\x07 NUL:\0 DEL:\x7f"));
    assert_eq!(sip(&to.uri).user.as_deref(), Some(USER));
    let from = m.from().expect("from");
    assert_eq!(from.display.as_deref(), Some("token1~` token2'+_ token3*%!.-"));
    assert_eq!(from.params.value("fromParam''~+*_!.-%"), Some("\"работающий\""));
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    assert_eq!(m.call_id(), Ok(r#"intmeth.word%ZK-!.*_+'@word`~)(><:\/"][?}{"#));
    let cseq = m.cseq().expect("cseq");
    assert_eq!((cseq.seq, cseq.method), (139_122_385, Method::Extension(METHOD.into())));
    assert_eq!(header(&m, "Max-Forwards"), Some("255"));
    assert_eq!(header(&m, "extensionHeader-!.%*+_`'~"), Some("\u{feff}大停電"));
    assert!(m.body.is_empty());
}

/// 3.1.1.3 Valid use of the % escaping mechanism.
#[test]
fn esc01() {
    let m = valid("esc01");
    assert_eq!(m.method(), Some(&Method::Invite));
    let ruri = sip(request_uri(&m));
    assert_eq!(ruri.user.as_deref(), Some("sips%3Auser%40example.com"));
    assert_eq!(ruri.user_unescaped().as_deref(), Some("sips:user@example.com"));
    assert_eq!(ruri.host, Host::Domain("example.net".into()));
    assert_eq!(sip(&m.to().expect("to").uri).user_unescaped().as_deref(), Some("user"));
    assert_eq!(sip(&m.from().expect("from").uri).user_unescaped().as_deref(), Some("I have spaces"));
    assert_eq!(m.call_id(), Ok("esc01.239409asdfakjkn23onasd0-3234"));
    assert_eq!(m.headers.get(&HeaderName::ContentType), Some("application/sdp"));
    let c = m.contact().expect("contact").expect("parses");
    let cu = sip(&c.uri);
    assert_eq!(cu.user_unescaped().as_deref(), Some("caller"));
    // Parameters are kept escaped; unescaping is a single pass, so the
    // "name" parameter is "value%41", not "valueA" (RFC 3986).
    assert_eq!(
        cu.params.0,
        vec![("%6C%72".to_owned(), None), ("n%61me".to_owned(), Some("v%61lue%25%34%31".to_owned()))]
    );
    assert_eq!(unescape("%6C%72"), "lr");
    assert_eq!(unescape("n%61me"), "name");
    assert_eq!(unescape("v%61lue%25%34%31"), "value%41");
    assert_eq!(m.body.len(), 150);
}

/// 3.1.1.4 Escaped NULs in URIs: two distinct contacts, and the AOR
/// is not shortened by the NUL.
#[test]
fn escnull() {
    let m = valid("escnull");
    assert_eq!(m.method(), Some(&Method::Register));
    assert_eq!(sip(&m.to().expect("to").uri).user_unescaped().as_deref(), Some("null-\0-null"));
    assert_eq!(sip(&m.from().expect("from").uri).user_unescaped().as_deref(), Some("null-\0-null"));
    let c = contacts(&m);
    assert_eq!(c.len(), 2);
    assert_eq!(sip(&c[0].uri).user.as_deref(), Some("%00"));
    assert_eq!(sip(&c[1].uri).user.as_deref(), Some("%00%00"));
    assert_eq!(sip(&c[0].uri).user_unescaped().as_deref(), Some("\0"));
    assert_eq!(sip(&c[1].uri).user_unescaped().as_deref(), Some("\0\0"));
    assert_ne!(c[0], c[1]);
}

/// 3.1.1.5 Use of % when it is not an escape: unknown method, display
/// names "%Z%45", a `C%6Fntact` header that is not a Contact.
#[test]
fn esc02() {
    let m = valid("esc02");
    assert_eq!(m.method(), Some(&Method::Extension("RE%47IST%45R".into())));
    assert_ne!(m.method(), Some(&Method::Register));
    assert_eq!(m.to().expect("to").display.as_deref(), Some("%Z%45"));
    assert_eq!(m.from().expect("from").display.as_deref(), Some("%Z%45"));
    assert_eq!(m.top_via().expect("via").branch(), Some("z9hG4bK209%fzsnel234"));
    assert_eq!(m.cseq().expect("cseq").method, Method::Extension("RE%47IST%45R".into()));
    let hosts: Vec<String> = contacts(&m).iter().map(|c| sip(&c.uri).host.to_string()).collect();
    assert_eq!(hosts, ["host1.example.com", "host3.example.com"]);
    assert_eq!(HeaderName::parse("C%6Fntact"), HeaderName::Other("C%6Fntact".into()));
    assert_eq!(header(&m, "C%6Fntact"), Some("<sip:alias2@host2.example.com>"));
}

/// 3.1.1.6 No LWS between display name and `<`.
#[test]
fn lwsdisp() {
    let m = valid("lwsdisp");
    let from = m.from().expect("from");
    assert_eq!(from.display.as_deref(), Some("caller"));
    assert_eq!(sip(&from.uri).user.as_deref(), Some("caller"));
    assert_eq!(from.tag(), Some("323"));
}

/// 3.1.1.7 Long values in header fields, 34 Via values with every
/// spelling of the name.
#[test]
fn longreq() {
    let m = valid("longreq");
    let to = m.to().expect("to");
    assert_eq!(to.display, Some(format!("I have a user name of {} proportion", "extreme".repeat(10))));
    let tu = sip(&to.uri);
    assert_eq!(tu.port, Some(6000));
    assert_eq!(tu.params.value("unknownparam1"), Some(format!("very{}value", "long".repeat(20)).as_str()));
    assert_eq!(tu.params.value(&format!("longparam{}", "name".repeat(25))), Some("shortvalue"));
    assert_eq!(tu.params.get(&format!("very{}ParameterNameWithNoValue", "long".repeat(25))), Some(None));
    let from = m.from().expect("from");
    let caller = "amazinglylongcallername".repeat(5);
    assert_eq!(sip(&from.uri).user.as_deref(), Some(caller.as_str()));
    assert_eq!(from.tag(), Some(format!("12{}424", "982".repeat(50)).as_str()));
    assert_eq!(
        from.params.value(&format!("unknownheaderparam{}", "name".repeat(20))),
        Some(format!("unknowheaderparam{}", "value".repeat(15)).as_str())
    );
    assert_eq!(from.params.get(&format!("unknownValueless{}", "paramname".repeat(10))), Some(None));
    assert_eq!(m.call_id(), Ok(format!("longreq.one{}longcallid", "really".repeat(20)).as_str()));
    let long = "long".repeat(20);
    assert_eq!(
        header(&m, &format!("Unknown-{}-Name", "Long".repeat(20))),
        Some(format!("unknown-{long}-value; unknown-{long}-parameter-name = unknown-{long}-parameter-value").as_str())
    );
    let v = vias(&m);
    assert_eq!(v.len(), 34);
    for (i, via) in v.iter().take(33).enumerate() {
        assert_eq!(via.host, Host::Domain(format!("sip{}.example.com", 33 - i)));
        assert_eq!(via.transport, "TCP");
    }
    assert_eq!(v[33].host, Host::Domain("host.example.com".into()));
    assert_eq!(v[33].params.value("received"), Some("192.0.2.5"));
    assert_eq!(v[33].branch(), Some(format!("very{}branchvalue", "long".repeat(50)).as_str()));
    assert_eq!(sip(&m.contact().expect("contact").expect("parses").uri).user.as_deref(), Some(caller.as_str()));
    assert_eq!(m.body.len(), 150);
}

/// 3.1.1.8 Extra trailing octets in a UDP datagram are ignored (RFC 3261
/// section 18.3); on a stream they would be the next frame.
#[test]
fn dblreq() {
    let data = raw("dblreq");
    let m = valid("dblreq");
    assert_eq!(m.method(), Some(&Method::Register));
    assert_eq!(m.call_id(), Ok("dblreq.0ha0isndaksdj99sdfafnl3lk233412"));
    assert!(m.body.is_empty());
    assert!(!String::from_utf8_lossy(&m.to_bytes()).contains("INVITE"));

    let invite_at = data.windows(6).position(|w| w == b"INVITE").expect("second request");
    let mut framer = StreamFramer::new(Limits::default());
    framer.push(&data);
    assert_eq!(framer.next_frame().expect("frame"), Some(Frame::Message(data[..invite_at - 2].to_vec())));
    assert_eq!(framer.next_frame().expect("frame"), Some(Frame::Pong));
    let Some(Frame::Message(second)) = framer.next_frame().expect("frame") else { panic!("second message") };
    let second = parse_message(&second, &Limits::default(), Framing::Stream).expect("INVITE");
    assert_eq!(second.method(), Some(&Method::Invite));
    assert_eq!(second.body.len(), 150);
}

/// 3.1.1.9 Semicolon-separated parameters in the URI user part.
#[test]
fn semiuri() {
    let m = valid("semiuri");
    let ruri = sip(request_uri(&m));
    assert_eq!(ruri.user.as_deref(), Some("user;par=u%40example.net"));
    assert_eq!(ruri.user_unescaped().as_deref(), Some("user;par=u@example.net"));
    assert_eq!(ruri.host, Host::Domain("example.com".into()));
    assert!(ruri.params.0.is_empty());
    let accept: Vec<&str> = m.headers.values(&HeaderName::Accept).collect();
    assert_eq!(
        accept,
        [
            "application/sdp",
            "application/pkcs7-mime",
            "multipart/mixed",
            "multipart/signed",
            "message/sip",
            "message/sipfrag"
        ]
    );
}

/// 3.1.1.10 Varied and unknown transport types.
#[test]
fn transports() {
    let m = valid("transports");
    let t: Vec<String> = vias(&m).into_iter().map(|v| v.transport).collect();
    assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    assert_eq!(m.call_id(), Ok("transports.kijh4akdnaqjkwendsasfdj"));
}

/// 3.1.1.11 Multipart MIME body with binary data and NULs.
#[test]
fn mpart01() {
    let data = raw("mpart01");
    let m = valid("mpart01");
    assert_eq!(m.method(), Some(&Method::Message));
    assert_eq!(m.body.len(), 553);
    assert_eq!(&m.body[..], &data[data.len() - 553..]);
    assert!(m.body.contains(&0));
    assert!(m.body.starts_with(b"--7a9cbec02ceef655\r\n"));
    assert!(m.body.ends_with(b"--7a9cbec02ceef655--\r\n"));
    assert_eq!(header(&m, "Content-Type"), Some("multipart/mixed;boundary=7a9cbec02ceef655"));
    let via = m.top_via().expect("via");
    assert_eq!((&via.host, via.port), (&Host::V4(Ipv4Addr::LOCALHOST), Some(5070)));
    assert_eq!(via.params.get("rport"), Some(None));
    let route = m.name_addrs(&HeaderName::Route).expect("route");
    assert_eq!(sip(&route[0].uri).port, Some(5080));
    assert_eq!(sip(&route[0].uri).user, None);
    // The stream framer cuts it by Content-Length, NULs notwithstanding.
    let mut framer = StreamFramer::new(Limits::default());
    for chunk in data.chunks(7) {
        framer.push(chunk);
    }
    assert_eq!(framer.next_frame().expect("frame"), Some(Frame::Message(data.clone())));
}

/// 3.1.1.12 Unusual reason phrase with non-ASCII UTF-8.
#[test]
fn unreason() {
    let m = valid("unreason");
    assert_eq!(
        m.start,
        StartLine::Response {
            code: 200, reason: "= 2**3 * 5**2 но сто девяносто девять - простое".into()
        }
    );
    assert_eq!(m.to().expect("to").tag(), Some("2229"));
    assert_eq!(m.body.len(), 154);
}

/// 3.1.1.13 Empty reason phrase (the SP after the code is there).
#[test]
fn noreason() {
    let m = valid("noreason");
    assert_eq!(m.start, StartLine::Response { code: 100, reason: String::new() });
    assert!(m.to_bytes().starts_with(b"SIP/2.0 100 \r\n"));
}

// ---------------------------------------------------------------------------
// 3.1.2 Invalid messages. Our verdict for each is strict: the message is
// refused by the parser, by `validate()`, or by the typed accessor that
// reads the broken field.

/// 3.1.2.1 Extraneous `;` and `,` in Via and Contact: "should respond with
/// a 400". Empty parameters are refused, so the top Via does not parse
/// and `validate()` fails; so does the Contact.
#[test]
fn badinv01() {
    let m = dgram("badinv01").expect("header section is well framed");
    assert_eq!(m.validate(), Err(ParseError::Header("empty parameter")));
    assert!(m.top_via().is_err());
    assert!(matches!(m.contact(), Some(Err(ParseError::Header("empty parameter")))));
}

/// 3.1.2.2 Content-Length larger than the message: over UDP "respond with
/// a 400"; over a stream, wait for more data.
#[test]
fn clerr() {
    let data = raw("clerr");
    let err = dgram("clerr").expect_err("body shorter than Content-Length");
    assert!(matches!(err, ParseError::BodyLength { declared: 9999, .. }), "{err:?}");
    assert!(matches!(
        parse_message(&data, &Limits::default(), Framing::Stream),
        Err(ParseError::BodyLength { declared: 9999, .. })
    ));
    let mut framer = StreamFramer::new(Limits::default());
    framer.push(&data);
    assert_eq!(framer.next_frame().expect("no error yet"), None, "the framer waits for the rest of the body");
}

/// 3.1.2.3 Negative Content-Length: an error; on a stream the framing
/// error is not recoverable.
#[test]
fn ncl() {
    let data = raw("ncl");
    let not_a_number = ParseError::HeaderValue { name: "Content-Length", reason: "not a number" };
    assert_eq!(dgram("ncl"), Err(not_a_number.clone()));
    assert_eq!(parse_message(&data, &Limits::default(), Framing::Stream), Err(not_a_number.clone()));
    let mut framer = StreamFramer::new(Limits::default());
    framer.push(&data);
    assert_eq!(framer.next_frame(), Err(not_a_number));
}

/// 3.1.2.4 Request scalar fields with overlarge values: "400 Bad Request
/// due to the CSeq error".
#[test]
fn scalar02() {
    let m = dgram("scalar02").expect("parses");
    assert!(matches!(m.validate(), Err(ParseError::HeaderValue { name: "CSeq", .. })));
    assert!(m.cseq().is_err());
    assert_eq!(header(&m, "Max-Forwards").map(str::parse::<u8>).map(|r| r.is_err()), Some(true));
}

/// 3.1.2.5 Response scalar fields with overlarge values: "simply discard
/// it". The CSeq does not parse, so the response fails `validate()`.
#[test]
fn scalarlg() {
    let m = dgram("scalarlg").expect("parses");
    assert_eq!(m.status(), Some(503));
    assert!(matches!(m.validate(), Err(ParseError::HeaderValue { name: "CSeq", .. })));
}

/// 3.1.2.6 Unterminated quoted string in the To display name: "should
/// return a 400". We infer no quote.
#[test]
fn quotbal() {
    let m = dgram("quotbal").expect("parses");
    let unterminated = ParseError::HeaderValue { name: "quoted-string", reason: "unterminated quote" };
    assert_eq!(m.to(), Err(unterminated.clone()));
    assert_eq!(m.validate(), Err(unterminated));
}

/// 3.1.2.7 `<>` enclosing the Request-URI: "reasonable always to reject".
#[test]
fn ltgtruri() {
    assert_eq!(dgram("ltgtruri"), Err(ParseError::Uri("invalid scheme")));
}

/// 3.1.2.8 LWS embedded in the Request-URI: "should respond with a 400".
#[test]
fn lwsruri() {
    assert!(matches!(dgram("lwsruri"), Err(ParseError::StartLine(_))));
}

/// 3.1.2.9 Multiple SP between request-line elements: "acceptable to
/// reject"; we do.
#[test]
fn lwsstart() {
    assert!(matches!(dgram("lwsstart"), Err(ParseError::StartLine(_))));
}

/// 3.1.2.10 SP at the end of the request line: "acceptable to reject";
/// we do.
#[test]
fn trws() {
    assert!(matches!(dgram("trws"), Err(ParseError::StartLine(_))));
}

/// 3.1.2.11 Escaped headers in the Request-URI: "acceptable to reject
/// with a 400"; we do (RFC 3261 section 19.1.5 allows no headers there).
#[test]
fn escruri() {
    assert_eq!(dgram("escruri"), Err(ParseError::StartLine("headers in the Request-URI")));
}

/// 3.1.2.12 Non-GMT time zone in Date. The RFC says an element "shouldn't"
/// reject it "unless the contents of the Date header field were actually
/// important to its processing". This crate never interprets Date, so the
/// message is accepted and the value kept verbatim for the application.
#[test]
fn baddate() {
    let m = dgram("baddate").expect("parses");
    m.validate().expect("Date is not read by validate()");
    assert_eq!(header(&m, "Date"), Some("Fri, 01 Jan 2010 16:00:00 EST"));
    assert_round_trip(&m);
}

/// 3.1.2.13 A URI with escaped headers in Contact without `<>`:
/// "reasonable ... to respond with a 400". Contact is not one of the
/// headers `validate()` requires (a REGISTER needs none), so the message
/// validates, but reading the Contact fails and no angle brackets are
/// inferred.
#[test]
fn regbadct() {
    let m = dgram("regbadct").expect("parses");
    m.validate().expect("Contact is not checked by validate()");
    assert_eq!(
        m.contact(),
        Some(Err(ParseError::HeaderValue { name: "name-addr", reason: "addr-spec with reserved characters needs <>" }))
    );
}

/// 3.1.2.14 Spaces within addr-spec (`< sip:... >`): "reasonable to reject
/// with a 400"; we do.
#[test]
fn badaspec() {
    let m = dgram("badaspec").expect("parses");
    let ws = ParseError::HeaderValue { name: "name-addr", reason: "whitespace inside <>" };
    assert_eq!(m.to(), Err(ws.clone()));
    assert_eq!(m.validate(), Err(ws));
}

/// 3.1.2.15 Non-token characters in an unquoted display name: "reasonable
/// always to reject". The archive's copy of this message lacks the empty
/// line that ends the header section (the RFC text shows one), so as
/// received it is incomplete; with the empty line added the From and To
/// are still refused.
#[test]
fn baddn() {
    let mut data = raw("baddn");
    assert_eq!(dgram("baddn"), Err(ParseError::Incomplete));
    data.extend_from_slice(b"\r\n");
    let m = parse_message(&data, &Limits::default(), Framing::Datagram).expect("with the empty line");
    let not_tokens = ParseError::HeaderValue { name: "name-addr", reason: "unquoted display name is not tokens" };
    assert_eq!(m.from(), Err(not_tokens.clone()));
    assert_eq!(m.to(), Err(not_tokens));
    // The comma also makes From look like two values.
    assert!(matches!(m.validate(), Err(ParseError::HeaderValue { name: "From", .. })));
}

/// 3.1.2.16 Unknown protocol version SIP/7.0: "should respond ... with a
/// 505". The parser refuses the start line; the error says why.
#[test]
fn badvers() {
    assert_eq!(dgram("badvers"), Err(ParseError::StartLine("unsupported SIP version")));
}

/// 3.1.2.17 Request-line and CSeq method mismatch: "will respond with a
/// 400".
#[test]
fn mismatch01() {
    let m = dgram("mismatch01").expect("parses");
    assert_eq!(m.method(), Some(&Method::Options));
    assert_eq!(m.cseq().expect("cseq").method, Method::Invite);
    assert!(matches!(m.validate(), Err(ParseError::HeaderValue { name: "CSeq", .. })));
}

/// 3.1.2.18 Unknown method with CSeq mismatch: 501 or 400; refused by
/// `validate()` as for 3.1.2.17.
#[test]
fn mismatch02() {
    let m = dgram("mismatch02").expect("parses");
    assert_eq!(m.method(), Some(&Method::Extension("NEWMETHOD".into())));
    assert!(matches!(m.validate(), Err(ParseError::HeaderValue { name: "CSeq", .. })));
    assert_eq!(m.body.len(), 138);
}

/// 3.1.2.19 Overlarge response code: "should simply drop it".
#[test]
fn bigcode() {
    assert_eq!(dgram("bigcode"), Err(ParseError::StartLine("status code is not three digits")));
}

// ---------------------------------------------------------------------------
// 3.2 to 3.4: transaction and application semantics. The parser accepts
// what the RFC calls well formed and leaves the decision (416, 420, 483...)
// to the layers above; the parsed values they decide on are asserted.

/// 3.2.1 Missing transaction identifier: the branch is just the magic
/// cookie. The parser must not break; the transaction layer decides.
#[test]
fn badbranch() {
    let m = valid("badbranch");
    assert_eq!(m.top_via().expect("via").branch(), Some("z9hG4bK"));
}

/// 3.3.1 Missing Call-ID, From and To: "ideally ... 400".
#[test]
fn insuf() {
    let m = dgram("insuf").expect("parses");
    assert_eq!(m.validate(), Err(ParseError::Missing("Call-ID")));
    assert_eq!(m.from(), Err(ParseError::Missing("From")));
    assert_eq!(m.to(), Err(ParseError::Missing("To")));
    assert_eq!(m.body.len(), 152);
}

/// 3.3.2 Unknown Request-URI scheme: well formed; the element answers 416.
#[test]
fn unkscm() {
    let m = valid("unkscm");
    assert_eq!(request_uri(&m), &Uri::Other("nobodyKnowsThisScheme:totallyopaquecontent".into()));
    assert!(request_uri(&m).as_sip().is_none());
}

/// 3.3.3 Known but atypical Request-URI scheme: well formed.
#[test]
fn novelsc() {
    let m = valid("novelsc");
    assert_eq!(request_uri(&m), &Uri::Other("soap.beep://192.0.2.103:3002".into()));
}

/// 3.3.4 Non-SIP URI schemes in To, From and Contact: syntactically valid.
#[test]
fn unksm2() {
    let m = valid("unksm2");
    let to = m.to().expect("to");
    assert_eq!((to.uri, to.angle), (Uri::Other("isbn:2983792873".into()), false));
    let from = m.from().expect("from");
    assert_eq!(from.uri, Uri::Other("http://www.example.com".into()));
    assert_eq!(from.tag(), Some("3234233"));
    assert_eq!(contacts(&m)[0].uri, Uri::Other("name:John_Smith".into()));
}

/// 3.3.5 Unsupported Require and Proxy-Require options (420 above us).
#[test]
fn bext01() {
    let m = valid("bext01");
    assert!(m.headers.has_token(&HeaderName::Require, "nothingSupportsThis"));
    assert!(m.headers.has_token(&HeaderName::Require, "nothingSupportsThisEither"));
    let pr: Vec<&str> = m.headers.values(&HeaderName::ProxyRequire).collect();
    assert_eq!(pr, ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]);
    assert_eq!(m.top_via().expect("via").transport, "TLS");
}

/// 3.3.6 Unknown Content-Type (415 at an endpoint).
#[test]
fn invut() {
    let m = valid("invut");
    assert_eq!(m.headers.get(&HeaderName::ContentType), Some("application/unknownformat"));
    assert_eq!(&m.body[..], b"<audio>\r\n <pcmu port=\"443\"/>\r\n</audio>\r\n");
}

/// 3.3.7 Unknown Authorization scheme: well formed, kept verbatim.
#[test]
fn regaut01() {
    let m = valid("regaut01");
    assert_eq!(m.headers.get(&HeaderName::Authorization), Some("NoOneKnowsThisScheme opaque-data=here"));
}

/// 3.3.8 Multiple values in single-valued headers: "would respond with a
/// 400". `validate()` refuses a second Call-ID, CSeq, From or To.
#[test]
fn multi01() {
    let m = dgram("multi01").expect("parses");
    assert_eq!(m.validate(), Err(ParseError::HeaderValue { name: "Call-ID", reason: "more than one value" }));
    let mut m2 = m.clone();
    m2.headers.remove(&HeaderName::CallId);
    m2.headers.push(HeaderName::CallId, "multi01.98asdh@192.0.2.1");
    assert_eq!(m2.validate(), Err(ParseError::HeaderValue { name: "CSeq", reason: "more than one value" }));
    assert_eq!(m.headers.get_all(&HeaderName::parse("Max-Forwards")).count(), 2);
}

/// 3.3.9 Conflicting Content-Length values: an error; on a stream "the
/// framing error is not recoverable". The framer cuts by the first value;
/// parsing the frame then refuses the conflict.
#[test]
fn mcl01() {
    let data = raw("mcl01");
    let conflict = ParseError::HeaderValue { name: "Content-Length", reason: "conflicting values" };
    assert_eq!(dgram("mcl01"), Err(conflict.clone()));
    let mut framer = StreamFramer::new(Limits::default());
    framer.push(&data);
    let Some(Frame::Message(frame)) = framer.next_frame().expect("frame") else { panic!("a message frame") };
    assert_eq!(parse_message(&frame, &Limits::default(), Framing::Stream), Err(conflict));
}

/// 3.3.10 200 OK with a broadcast sent-by in the second Via: well formed
/// (the transaction user drops it).
#[test]
fn bcast() {
    let m = valid("bcast");
    assert_eq!(m.status(), Some(200));
    assert_eq!(vias(&m)[1].host, Host::V4(Ipv4Addr::BROADCAST));
}

/// 3.3.11 Max-Forwards of zero: legal.
#[test]
fn zeromf() {
    let m = valid("zeromf");
    assert_eq!(header(&m, "Max-Forwards"), Some("0"));
}

/// 3.3.12 Contact addr-spec without `<>`: `;unknownparam` is a contact
/// parameter, not a URI parameter.
#[test]
fn cparam01() {
    let m = valid("cparam01");
    let c = m.contact().expect("contact").expect("parses");
    assert!(!c.angle);
    assert!(sip(&c.uri).params.0.is_empty());
    assert_eq!(c.params.get("unknownparam"), Some(None));
}

/// 3.3.13 Contact in `<>`: `;unknownparam` is a URI parameter.
#[test]
fn cparam02() {
    let m = valid("cparam02");
    let c = m.contact().expect("contact").expect("parses");
    assert!(c.angle);
    assert_eq!(sip(&c.uri).params.get("unknownparam"), Some(None));
    assert!(c.params.0.is_empty());
    assert_eq!(sip(&c.uri).user.as_deref(), Some("+19725552222"));
}

/// 3.3.14 Contact URI with an escaped header: kept as part of the URI.
#[test]
fn regescrt() {
    let m = valid("regescrt");
    let c = m.contact().expect("contact").expect("parses");
    let u = sip(&c.uri);
    assert_eq!(u.headers.as_deref(), Some("Route=%3Csip:sip.example.com%3E"));
    assert_eq!(u.request_uri().headers, None);
    assert_eq!(unescape("%3Csip:sip.example.com%3E"), "<sip:sip.example.com>");
}

/// 3.3.15 Accept without application/sdp (406 or 400 above us).
#[test]
fn sdp01() {
    let m = valid("sdp01");
    assert_eq!(m.headers.get(&HeaderName::Accept), Some("text/nobodyKnowsThis"));
    assert_eq!(m.body.len(), 150);
}

/// 3.4.1 RFC 2543 syntax: no branch, no From tag, no Content-Length (the
/// body is the rest of the datagram), no Max-Forwards.
#[test]
fn inv2543() {
    let data = raw("inv2543");
    let m = valid("inv2543");
    assert_eq!(m.top_via().expect("via").branch(), None);
    assert_eq!(m.from().expect("from").tag(), None);
    assert_eq!(header(&m, "Max-Forwards"), None);
    assert_eq!(m.headers.get(&HeaderName::ContentLength), None);
    assert!(m.body.starts_with(b"v=0\r\n"));
    assert!(data.ends_with(&m.body));
    let rr = m.name_addrs(&HeaderName::RecordRoute).expect("record-route");
    assert_eq!(sip(&rr[0].uri).params.value("maddr"), Some("ss1.example.com"));
    // Without <>, `;user=phone` is a header parameter of To (RFC 3261
    // section 20), not a URI parameter.
    let to = m.to().expect("to");
    assert_eq!(to.params.value("user"), Some("phone"));
    assert!(sip(&to.uri).params.0.is_empty());
    // On a stream a missing Content-Length means an empty body.
    let s = parse_message(&data, &Limits::default(), Framing::Stream).expect("stream");
    assert!(s.body.is_empty());
}

/// `test.dat` is in the appendix A archive but described by no section:
/// its request line has no SIP-Version.
#[test]
fn archive_extra_test_dat() {
    assert!(matches!(dgram("test"), Err(ParseError::StartLine(_))));
}

// ---------------------------------------------------------------------------
// No panics, whatever the bytes.

/// Runs everything a receiver may call on some bytes; only a panic (or a
/// parsed message that does not re-parse) fails.
fn exercise(data: &[u8], chunks: &[usize]) {
    let limits = Limits::default();
    for framing in [Framing::Datagram, Framing::Stream] {
        if let Ok(m) = parse_message(data, &limits, framing) {
            let _ = m.validate();
            let _ = (m.call_id(), m.cseq(), m.from(), m.to(), m.top_via(), m.contact());
            for h in [HeaderName::Contact, HeaderName::Route, HeaderName::RecordRoute] {
                let _ = m.name_addrs(&h);
            }
            for v in m.headers.values(&HeaderName::Via) {
                let _ = Via::parse(v);
            }
            let again = parse_message(&m.to_bytes(), &limits, Framing::Stream);
            assert!(again.is_ok(), "{data:?} parsed but its serialisation did not: {:?}", again.err());
        }
    }
    for &chunk in chunks {
        let mut framer = StreamFramer::new(limits);
        'feed: for piece in data.chunks(chunk.max(1)) {
            framer.push(piece);
            loop {
                match framer.next_frame() {
                    Ok(Some(Frame::Message(msg))) => {
                        let _ = parse_message(&msg, &limits, Framing::Stream).map(|m| m.validate());
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
        }
    }
}

/// Every prefix of every message (a datagram cut short, a stream read in
/// the middle), and positions of the header section overwritten with bytes
/// that matter to the grammar (every position of the short messages, a
/// stride through the long ones, to stay within seconds in a debug build).
#[test]
fn no_panic_on_prefixes_and_byte_mutations() {
    for &(name, ..) in CORPUS {
        let data = raw(name);
        exercise(&data, &[1, 3, 64, data.len()]);
        for end in 0..data.len() {
            exercise(&data[..end], &[]);
        }
        let head = data.windows(4).position(|w| w == b"\r\n\r\n").map_or(data.len(), |p| p + 4);
        let stride = 1 + data.len() / 400;
        let mut mutated = data.clone();
        for i in (0..head).step_by(stride) {
            for b in [0u8, b'\r', b'\n', b' ', b':', b';', b',', b'"', b'<', b'\\', 0xff] {
                mutated[i] = b;
                exercise(&mutated, &[]);
            }
            mutated[i] = data[i];
        }
    }
}

#[test]
fn header_names_in_the_corpus() {
    // Every spelling of Via in longreq maps to the one header.
    for s in ["Via", "v", "V", "ViA", "VIa", "VIA", "via", "viA", "vIa", "vIA"] {
        assert_eq!(HeaderName::parse(s), HeaderName::Via, "{s}");
    }
    let h = Header { name: HeaderName::parse("MaX-fOrWaRdS"), value: "0068".into() };
    assert_eq!(h.name, HeaderName::MaxForwards);
}
