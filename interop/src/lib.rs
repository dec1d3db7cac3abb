//! Helpers for the end-to-end tests: G.711 µ-law, tone generation and
//! detection, WAV reading, a test CA, and baresip and Kamailio on loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub use media_mixer::g711::{ulaw_decode, ulaw_encode};

/// A port free for both UDP and TCP on 127.0.0.1.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    // The first port of a block of eight from 30000 to 32759, the block otherwise left alone:
    // callers use `p & !1` and `p + 1` for RTP and RTCP, and sipp given `-mp p` also binds p + 2
    // (and baresip may add p + 1), so handing out neighbouring ports let one test's far end take
    // the port another test was about to use. Below Linux's ephemeral range (32768 up), so no
    // socket that binds port 0 or connects out can take the port between this check and its use
    // (a baresip once failed to start with "Address already in use" that way); above the RTP
    // ports baresip is given (20000 to 29999) and below the gateway's media ranges in the tests
    // (42000 up). A counter shared by the process's threads hands each block out once.
    const FIRST: u16 = 30_000;
    const BLOCKS: u16 = 345;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = (std::process::id() % u32::from(BLOCKS)) as u16;
    let free = |p: u16| {
        std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() && std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()
    };
    for _ in 0..BLOCKS {
        let k = NEXT.fetch_add(1, Ordering::Relaxed) % BLOCKS;
        let p = FIRST + 8 * ((start + k) % BLOCKS);
        if (p..p + 4).all(free) {
            return p;
        }
    }
    // All taken (another suite on the machine?): any port the kernel gives.
    loop {
        let t = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = t.local_addr().expect("addr").port();
        if std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// `n` samples of a sine at `freq` Hz, sampled at `rate`, starting at
/// sample index `start`.
pub fn sine(freq: f64, rate: f64, start: usize, n: usize, amplitude: f64) -> Vec<i16> {
    (start..start + n)
        .map(|i| (amplitude * (2.0 * std::f64::consts::PI * freq * i as f64 / rate).sin()) as i16)
        .collect()
}

/// Goertzel power of `freq` in `samples`, normalised by the signal energy:
/// close to 1 for a pure tone at `freq`, close to 0 otherwise.
pub fn tone_ratio(samples: &[i16], freq: f64, rate: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * freq / rate;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut energy = 0.0;
    for &x in samples {
        let x = f64::from(x);
        energy += x * x;
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    if energy == 0.0 {
        0.0
    } else {
        2.0 * power / (energy * samples.len() as f64)
    }
}

/// Reads the samples of a 16-bit PCM WAV file (first channel).
pub fn read_wav(path: &Path) -> Option<(u32, Vec<i16>)> {
    let b = std::fs::read(path).ok()?;
    if b.get(0..4)? != b"RIFF" || b.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut i = 12;
    let (mut rate, mut channels, mut bits) = (0u32, 1u16, 16u16);
    while i + 8 <= b.len() {
        let id = &b[i..i + 4];
        let len = u32::from_le_bytes(b[i + 4..i + 8].try_into().ok()?) as usize;
        let body = b.get(i + 8..(i + 8 + len).min(b.len()))?;
        if id == b"fmt " {
            channels = u16::from_le_bytes(body.get(2..4)?.try_into().ok()?);
            rate = u32::from_le_bytes(body.get(4..8)?.try_into().ok()?);
            bits = u16::from_le_bytes(body.get(14..16)?.try_into().ok()?);
        } else if id == b"data" {
            if bits != 16 {
                return None;
            }
            let step = 2 * usize::from(channels.max(1));
            let samples = body.chunks_exact(step).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
            return Some((rate, samples));
        }
        i += 8 + len + (len & 1);
    }
    None
}

/// A test CA and a certificate for 127.0.0.1 / localhost signed by it, written as PEM files.
pub struct TestCertificate {
    /// The CA to trust.
    pub ca: PathBuf,
    /// The leaf certificate.
    pub cert: PathBuf,
    /// The leaf's private key.
    pub key: PathBuf,
}

impl TestCertificate {
    /// Makes the CA and the leaf and writes them into `dir` (`ca.pem`, `cert.pem`, `key.pem`).
    pub fn create(dir: &Path) -> TestCertificate {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "sip-interconnect interop CA");
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let mut leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("leaf");
        leaf_params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
        let leaf_key = rcgen::KeyPair::generate().expect("key");
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).expect("sign");
        let files = TestCertificate { ca: dir.join("ca.pem"), cert: dir.join("cert.pem"), key: dir.join("key.pem") };
        std::fs::write(&files.ca, ca.pem()).expect("write ca");
        std::fs::write(&files.cert, leaf.pem()).expect("write leaf");
        std::fs::write(&files.key, leaf_key.serialize_pem()).expect("write key");
        files
    }
}

/// Waits (at most three seconds) until something listens on TCP `port` of 127.0.0.1, looking in
/// `/proc` so as not to use up a connection.
pub fn wait_listening(port: u16) -> bool {
    for _ in 0..100 {
        let listening = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default().lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.get(1).is_some_and(|a| a.ends_with(&format!(":{port:04X}"))) && cols.get(3) == Some(&"0A")
        });
        if listening {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    false
}

/// A TLS front for a TCP far end: a test CA, a certificate for 127.0.0.1 / localhost signed by it,
/// and socat terminating TLS on `tls_port` and forwarding to `tcp_port`.
pub struct TlsFront {
    /// The CA to trust (PEM).
    pub ca: PathBuf,
    socat: Child,
}

impl TlsFront {
    /// Starts the front; its files go in `dir`.
    pub fn start(dir: &Path, tls_port: u16, tcp_port: u16) -> TlsFront {
        require("socat", "socat");
        let cert = TestCertificate::create(dir);
        let server_pem = dir.join("server.pem");
        let (key, leaf) = (std::fs::read_to_string(&cert.key), std::fs::read_to_string(&cert.cert));
        std::fs::write(&server_pem, format!("{}{}", key.expect("key"), leaf.expect("cert"))).expect("write leaf");
        let socat = Command::new("socat")
            .arg(format!(
                "OPENSSL-LISTEN:{tls_port},bind=127.0.0.1,reuseaddr,fork,cert={},verify=0",
                server_pem.display()
            ))
            .arg(format!("TCP:127.0.0.1:{tcp_port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn socat");
        wait_listening(tls_port);
        TlsFront { ca: cert.ca, socat }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.socat.kill();
        let _ = self.socat.wait();
    }
}

/// Whether a program is installed; panics naming the Debian package otherwise.
pub fn require(tool: &str, package: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "`{tool}` is missing: install the Debian package `{package}` (scripts/test-all does)");
}

/// A Kamailio SIP proxy (Debian `kamailio`, `kamailio-tls-modules`) in front of one far end, as
/// carriers and PBXs put one: it listens on UDP and TCP at `port` and TLS at `tls_port`, asks
/// for digest credentials (407, realm [`Kamailio::REALM`], user `gateway`, password
/// [`Kamailio::PASSWORD`]) on every INVITE outside a dialog, record-routes (two Record-Route
/// entries when the transport changes), and sends every new request to `target` over UDP. What it
/// did is in its log, one line per decision (`CHALLENGED`, `AUTHENTICATED`, `PRELOADED-ROUTE`,
/// `LOOSE-ROUTED`).
pub struct Kamailio {
    child: Child,
    /// Its configuration and log directory.
    pub dir: PathBuf,
    /// Its UDP and TCP port on 127.0.0.1.
    pub port: u16,
    /// Its TLS port on 127.0.0.1.
    pub tls_port: u16,
    /// The CA its TLS certificate is signed by.
    pub ca: PathBuf,
}

impl Kamailio {
    /// The digest realm of its challenges.
    pub const REALM: &'static str = "interop.test";
    /// The password it takes for the user `gateway`.
    pub const PASSWORD: &'static str = "proxy-s3cret";

    /// Starts it in front of `target` (a SIP URI such as `sip:bs@127.0.0.1:5070`).
    pub fn start(name: &str, target: &str) -> Kamailio {
        Kamailio::launch(name, target, None)
    }

    /// Like [`Kamailio::start`], its TLS port asking every client for a certificate signed by
    /// the CA in `client_ca` (mutual TLS, as some SIP trunks want) and refusing those without.
    pub fn start_requiring_client_certificate(name: &str, target: &str, client_ca: &Path) -> Kamailio {
        Kamailio::launch(name, target, Some(client_ca))
    }

    fn launch(name: &str, target: &str, client_ca: Option<&Path>) -> Kamailio {
        require("kamailio", "kamailio");
        // Debian keeps the modules under the architecture's library directory.
        let modules = std::fs::read_dir("/usr/lib")
            .into_iter()
            .flatten()
            .flatten()
            .map(|d| d.path().join("kamailio/modules"))
            .chain([PathBuf::from("/usr/lib/kamailio/modules")])
            .find(|m| m.join("tm.so").exists())
            .unwrap_or_else(|| panic!("Kamailio's modules are not under /usr/lib/*/kamailio/modules"));
        assert!(
            modules.join("tls.so").exists(),
            "Kamailio's TLS module is missing from {}: install the Debian package `kamailio-tls-modules` (scripts/test-all does)",
            modules.display()
        );
        let modules = modules.display();
        let dir = std::env::temp_dir().join(format!("kamailio-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let cert = TestCertificate::create(&dir);
        let (port, tls_port) = (free_port(), free_port());
        let clients = match client_ca {
            Some(ca) => format!("verify_certificate = yes\nrequire_certificate = yes\nca_list = {}\n", ca.display()),
            None => "verify_certificate = no\nrequire_certificate = no\n".to_string(),
        };
        std::fs::write(
            dir.join("tls.cfg"),
            format!(
                "[server:default]\nmethod = TLSv1.2+\nprivate_key = {}\ncertificate = {}\n{clients}\n\
[client:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n",
                cert.key.display(),
                cert.cert.display()
            ),
        )
        .expect("tls.cfg");
        let config = format!(
            r#"#!KAMAILIO
debug=2
log_stderror=yes
fork=yes
children=1
tcp_children=1
auto_aliases=no
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
listen=tls:127.0.0.1:{tls_port}
enable_tls=yes
alias="127.0.0.1:{port}"
alias="127.0.0.1:{tls_port}"
mpath="{modules}/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "auth.so"
loadmodule "tls.so"
modparam("tls", "config", "{tls}")
modparam("rr", "enable_double_rr", 1)
modparam("auth", "secret", "interop-nonce-secret")

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{
            xlog("L_NOTICE", "LOOSE-ROUTED $rm from $proto\n");
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{ t_relay(); }}
            exit;
        }}
        xlog("L_NOTICE", "UNROUTABLE $rm from $proto\n");
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{ t_relay(); }}
        exit;
    }}
    if (is_method("INVITE")) {{
        if ($au != "gateway" || !pv_proxy_authenticate("{realm}", "{password}", "0")) {{
            xlog("L_NOTICE", "CHALLENGED $rm from $proto\n");
            proxy_challenge("{realm}", "0");
            exit;
        }}
        xlog("L_NOTICE", "AUTHENTICATED $rm user=$au from $proto\n");
        consume_credentials();
    }}
    # A route pre-loaded by a UA that uses us as its outbound proxy names us: done with.
    if (is_present_hf("Route")) {{
        xlog("L_NOTICE", "PRELOADED-ROUTE $rm to $ru\n");
        remove_hf("Route");
    }}
    record_route();
    $ru = "{target}";
    t_relay();
}}
"#,
            tls = dir.join("tls.cfg").display(),
            realm = Self::REALM,
            password = Self::PASSWORD,
        );
        std::fs::write(dir.join("kamailio.cfg"), config).expect("kamailio.cfg");
        let log = std::fs::File::create(dir.join("kamailio.log")).expect("log");
        use std::os::unix::process::CommandExt;
        let child = Command::new("kamailio")
            .args(["-DD", "-E", "-m", "32", "-M", "4", "-f"])
            .arg(dir.join("kamailio.cfg"))
            .arg("-Y")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            // Its own process group: the children it forks are stopped with it.
            .process_group(0)
            .spawn()
            .expect("spawn kamailio");
        let k = Kamailio { child, dir, port, tls_port, ca: cert.ca };
        assert!(wait_listening(port) && wait_listening(tls_port), "kamailio did not start listening:\n{}", k.log());
        k
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kamailio.log")).unwrap_or_default()
    }

    /// Its decision lines (`CHALLENGED INVITE from udp`, ...), in order.
    pub fn decisions(&self) -> Vec<String> {
        const WORDS: [&str; 5] = ["CHALLENGED ", "AUTHENTICATED ", "PRELOADED-ROUTE ", "LOOSE-ROUTED ", "UNROUTABLE "];
        self.log()
            .lines()
            .filter_map(|l| WORDS.iter().find_map(|w| l.find(w).map(|i| l[i..].trim().to_string())))
            .collect()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // The whole group: the main process and the workers it forked.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A baresip instance answering calls automatically, playing a sine tone
/// and recording what it receives.
pub struct Baresip {
    child: Child,
    /// Its configuration and recording directory.
    pub dir: PathBuf,
    /// Its SIP port on 127.0.0.1.
    pub port: u16,
    /// Its `ctrl_tcp` command port on 127.0.0.1.
    pub ctrl_port: u16,
}

impl Baresip {
    /// Starts baresip with `mediaenc` (`srtp-mand`, `dtls_srtp`, or empty)
    /// and a source tone of `tone_hz`.
    pub fn start(name: &str, port: u16, mediaenc: &str, tone_hz: u32) -> Baresip {
        Baresip::start_with_codec(name, port, mediaenc, tone_hz, "PCMU")
    }

    /// Like [`Baresip::start`], offering only `codec` (`PCMU`, `PCMA`, `G722` or `opus`).
    pub fn start_with_codec(name: &str, port: u16, mediaenc: &str, tone_hz: u32, codec: &str) -> Baresip {
        Baresip::launch(name, port, mediaenc, tone_hz, codec, false)
    }

    /// Like [`Baresip::start`], with video too: VP8, a synthetic camera (`fakevideo`) and a display
    /// that only counts.
    pub fn start_with_video(name: &str, port: u16, mediaenc: &str) -> Baresip {
        Baresip::launch(name, port, mediaenc, 440, "PCMU", true)
    }

    fn launch(name: &str, port: u16, mediaenc: &str, tone_hz: u32, codec: &str, video: bool) -> Baresip {
        require("baresip", "baresip-core");
        let dir = std::env::temp_dir().join(format!("baresip-{}-{name}", std::process::id()));
        let ctrl_port = free_port();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let config = format!(
            "sip_listen\t127.0.0.1:{port}\naudio_player\taufile,{d}/played.wav\naudio_source\tausine,{tone_hz}\naudio_alert\taufile,{d}/alert.wav\n\
ausrc_srate\t48000\nauplay_srate\t48000\nausrc_channels\t2\nnet_interface\t127.0.0.1\nrtcp_mux\tno\nrtp_ports\t20000-29999\nmodule_path\t/usr/lib/baresip/modules\nmodule\tg711.so\nmodule\tg722.so\nmodule\topus.so\nmodule\taufile.so\nmodule\tausine.so\nmodule\tsndfile.so\nmodule\tmenu.so\n\
module\tsrtp.so\nmodule\tdtls_srtp.so\nmodule\tctrl_tcp.so\nctrl_tcp_listen\t127.0.0.1:{ctrl_port}\nmodule_tmp\taccount.so\nsnd_path\t{d}\n",
            d = dir.display()
        );
        let config = if video {
            format!("{config}module\tvp8.so\nmodule\tfakevideo.so\nvideo_source\tfakevideo,nil\nvideo_display\tfakevideo,nil\nvideo_size\t320x240\nvideo_fps\t15\n")
        } else {
            config
        };
        std::fs::write(dir.join("config"), config).expect("config");
        let enc = if mediaenc.is_empty() { String::new() } else { format!(";mediaenc={mediaenc}") };
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:bs@127.0.0.1>;regint=0;answermode=auto;audio_codecs={codec}{}{enc}\n",
                if video { ";video_codecs=VP8" } else { "" }
            ),
        )
        .expect("accounts");
        let log = std::fs::File::create(dir.join("baresip.log")).expect("log");
        let child = Command::new("baresip")
            .arg("-f")
            .arg(&dir)
            .arg("-t")
            .arg("60")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn baresip");
        // Wait until it says it is ready.
        for _ in 0..100 {
            if std::fs::read_to_string(dir.join("baresip.log")).is_ok_and(|l| l.contains("baresip is ready")) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let b = Baresip { child, dir, port, ctrl_port };
        assert!(b.log().contains("baresip is ready"), "baresip did not start:\n{}", b.log());
        b
    }

    /// Runs a baresip command (`hold`, `resume`, `sndcode`, ...) through `ctrl_tcp` (a netstring
    /// carrying JSON) and returns its response, or the error that prevented it.
    pub fn command(&self, command: &str, params: &str) -> Result<String, String> {
        use std::io::{Read, Write};
        let body = serde_json::json!({"command": command, "params": params, "token": "interop"}).to_string();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.ctrl_port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(5))).map_err(|e| e.to_string())?;
        s.write_all(format!("{}:{body},", body.len()).as_bytes()).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // One netstring back: `len:{...},` (events may come first; read until the response).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            let n = s.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&out);
            if text.contains("\"response\":true") && text.ends_with(',') {
                return Ok(text.into_owned());
            }
        }
        Err(format!("no response to {command}: {}", String::from_utf8_lossy(&out)))
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default()
    }

    /// The WAV files sndfile wrote whose name contains `part` (`dec` is
    /// what baresip received and decoded).
    pub fn recordings(&self, part: &str) -> Vec<PathBuf> {
        std::fs::read_dir(&self.dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "wav") && p.to_string_lossy().contains(part))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where `template` is heard in `recording` (both at one sample rate) and how well: the offset
/// (in samples) of the best match and its normalised cross-correlation (1 for an exact copy at any
/// level, near 0 for unrelated sound). The search aligns 10 ms loudness envelopes first, then
/// refines sample by sample within one envelope block.
pub fn find_in(recording: &[i16], template: &[i16], rate: u32) -> (usize, f64) {
    let block = (rate as usize / 100).max(1);
    let envelope = |x: &[i16]| -> Vec<f64> {
        x.chunks(block)
            .map(|c| (c.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / c.len() as f64).sqrt())
            .collect()
    };
    let (er, et) = (envelope(recording), envelope(template));
    if et.is_empty() || er.len() < et.len() {
        return (0, 0.0);
    }
    let pearson = |a: &[f64], b: &[f64]| {
        let n = a.len() as f64;
        let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
        let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
        for (x, y) in a.iter().zip(b) {
            sab += (x - ma) * (y - mb);
            saa += (x - ma).powi(2);
            sbb += (y - mb).powi(2);
        }
        if saa == 0.0 || sbb == 0.0 {
            0.0
        } else {
            sab / (saa * sbb).sqrt()
        }
    };
    let coarse = (0..=er.len() - et.len())
        .map(|o| (o, pearson(&er[o..o + et.len()], &et)))
        .fold((0, f64::MIN), |best, x| if x.1 > best.1 { x } else { best })
        .0;
    let t_norm = template.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>().sqrt();
    let from = (coarse * block).saturating_sub(block);
    let to = (coarse * block + block).min(recording.len().saturating_sub(template.len()));
    let mut best = (from, 0.0);
    for o in from..=to.max(from) {
        let Some(w) = recording.get(o..o + template.len()) else { break };
        let dot: f64 = w.iter().zip(template).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
        let w_norm = w.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>().sqrt();
        let score = if w_norm == 0.0 || t_norm == 0.0 { 0.0 } else { dot / (w_norm * t_norm) };
        if score > best.1 {
            best = (o, score);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_round_trip_is_close() {
        for s in [-32000i16, -1000, -10, 0, 10, 1000, 32000] {
            let d = ulaw_decode(ulaw_encode(s));
            assert!((i32::from(d) - i32::from(s)).abs() <= i32::from(s).abs() / 16 + 16, "{s} -> {d}");
        }
        // ITU-T G.711 reference points.
        assert_eq!(ulaw_encode(0), 0xff);
        assert_eq!(ulaw_decode(0xff), 0);
        assert_eq!(ulaw_decode(0x80), 32124);
    }

    #[test]
    fn find_in_locates_a_copy_and_rejects_other_sound() {
        // A chirp-like template hidden, quieter, at 1234 samples into noise-free silence and a tone.
        let template: Vec<i16> = (0..1600).map(|i| ((i as f64 * i as f64 / 4000.0).sin() * 9000.0) as i16).collect();
        let mut rec = sine(300.0, 8000.0, 0, 6000, 2000.0);
        for (i, s) in template.iter().enumerate() {
            rec[1234 + i] = rec[1234 + i].saturating_add(s / 2);
        }
        let (at, score) = find_in(&rec, &template, 8000);
        assert_eq!(at, 1234);
        assert!(score > 0.8, "{score}");
        let other: Vec<i16> = sine(1700.0, 8000.0, 0, 1600, 9000.0);
        let (_, score) = find_in(&rec, &other, 8000);
        assert!(score < 0.3, "{score}");
    }

    #[test]
    fn goertzel_finds_the_tone() {
        let s = sine(1000.0, 8000.0, 0, 800, 8000.0);
        assert!(tone_ratio(&s, 1000.0, 8000.0) > 0.8);
        assert!(tone_ratio(&s, 440.0, 8000.0) < 0.05);
    }
}
