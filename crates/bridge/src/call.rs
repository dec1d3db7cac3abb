//! One SIP call from dial to `callDestroyed`: the INVITE with our offer, the answer read into an
//! agreement, the media leg (SRTP when agreed), the session's mix sent in the negotiated codec,
//! the SIP party's audio decoded and published into the session as Opus, re-offers (hold and
//! resume) answered, the media timeouts, and the ending with the real reason.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use media_mixer::jitter::{JitterBuffer, JitterConfig, Next, TimestampExtender};
use media_mixer::opus::{OpusEncoder, OpusEncoderConfig};
use rand::{Rng, RngCore};
use rest_api::SipOptions;
use sdp_negotiation::{Agreement, Direction, LocalSession, MediaAgreement, MediaSecurity, OfferOptions, SdesKey};
use serde_json::json;
use session::router::{FrameCodec, MediaFrame};
use session::{Connection, DisconnectReason, StreamId};
use sip_signaling::digest::Credentials;
use sip_signaling::driver::Dial;
use sip_signaling::{CallEvent, EndReason};
use srtp_transport::driver::{Inbound, LegHandle, MediaSockets};
use srtp_transport::{sdes, Context, LegConfig, MasterKey, MediaLeg, Options, RtpHeader, RtpPacket, Suite};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::audio::{AudioCommand, ListenerFrame};
use crate::codec::AudioCodec;
use crate::video::{FastUpdateInfos, VideoAsk, VideoControl};
use crate::Inner;

/// What the bridge asks of a running call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Control {
    /// Play these digits as RFC 4733 events (queued behind any still playing).
    Dtmf(String),
    /// The call's stream was force-muted (it matters only with `observeForceMute`).
    MuteForced,
    /// The SIP connection was force-disconnected.
    ForceDisconnected,
    /// The session ended.
    SessionEnded,
    /// The gateway is shutting down.
    Shutdown,
}

/// Everything a call task starts with.
pub(crate) struct CallSpec {
    pub(crate) id: String,
    pub(crate) number: u64,
    pub(crate) created_ms: u64,
    pub(crate) project: session::ProjectId,
    pub(crate) session: session::SessionId,
    pub(crate) connection: Connection,
    pub(crate) stream: StreamId,
    pub(crate) sip: SipOptions,
    pub(crate) dtmf: Arc<std::sync::Mutex<crate::DtmfReadiness>>,
    /// The call watches its session's video hub (to be left when it ends).
    pub(crate) watching: std::sync::atomic::AtomicBool,
    /// The call listens to its session's mixer (counted there once; left when it ends).
    pub(crate) listening: std::sync::atomic::AtomicBool,
    /// Key presses the SIP party may still report to the session (see [`DigitBudget`]).
    pub(crate) digits: std::sync::Mutex<DigitBudget>,
    /// Subscribers of the call's stream want a keyframe (taken by the video task).
    pub(crate) keyframe_wanted: std::sync::Mutex<Option<mpsc::UnboundedReceiver<()>>>,
}

/// How the call ended, for `callDestroyed` and the connection's reason.
struct Ending {
    code: String,
    message: String,
    disconnect: Option<DisconnectReason>,
}

impl Ending {
    fn new(code: impl ToString, message: impl Into<String>, disconnect: Option<DisconnectReason>) -> Ending {
        Ending { code: code.to_string(), message: message.into(), disconnect }
    }
}

/// A DTLS-SRTP handshake in progress, then the association.
pub(crate) struct DtlsState {
    /// Records from the peer, to the handshake.
    pub(crate) to_handshake: mpsc::Sender<Vec<u8>>,
    /// Records from the handshake, to the peer.
    pub(crate) from_handshake: mpsc::UnboundedReceiver<Vec<u8>>,
    /// The handshake's result.
    pub(crate) done: tokio::sync::oneshot::Receiver<
        Result<(srtp_transport::dtls::DtlsKeys, srtp_transport::dtls::DtlsSession), String>,
    >,
    /// Media flows (both ways) only once the keys are in place.
    pub(crate) ready: bool,
    /// Kept so the association answers retransmissions.
    pub(crate) _session: Option<srtp_transport::dtls::DtlsSession>,
    /// The association can still send records (false once its channel has closed).
    pub(crate) records_open: bool,
}

/// The media of an answered call.
struct Media {
    leg: LegHandle,
    inbound: mpsc::Receiver<Inbound>,
    agreement: MediaAgreement,
    codec: AudioCodec,
    /// The SIP party's packets (transcoded codecs), in its RTP clock, whatever their length.
    jitter: JitterBuffer<Vec<u8>>,
    /// Its RTP timestamps, extended past wrap-around.
    rtp_in: TimestampExtender,
    /// Whether it stamps G.722 with a 16 kHz clock instead of RFC 3551's 8 kHz.
    g722_clock: G722Clock,
    /// Its audio decoded (48 kHz) and not yet published: what a packet holds beyond the 20 ms
    /// frames the session takes (a 30 ms packet's last 10 ms).
    decoded: Vec<i16>,
    mix: mpsc::Receiver<ListenerFrame>,
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    publish: OpusEncoder,
    publish_time: u64,
    first_rtp: Option<Instant>,
    last_rtp: Option<Instant>,
    answered: Instant,
    on_hold: bool,
    /// The far end removed the audio stream (port 0 in a re-offer or in the answer to ours, RFC
    /// 3264 §8.2): nothing more is sent on it, RTCP included, and its silence is no timeout,
    /// until an offer brings it back.
    removed: bool,
    /// The next audio packet starts a talkspurt: the first, or the first after a time nothing was
    /// sent (hold, silence, DTMF, a new DTLS association); it carries the marker bit (RFC 3551
    /// §4.1), so the far end's jitter buffer takes the timestamp jump for a new start.
    talkspurt: bool,
    /// The last RTP timestamp of Opus forwarded from the SIP side (its clock, extended into
    /// `publish_time`).
    last_opus_ts: Option<u32>,
    /// DTLS-SRTP: records to the handshake until it completes, and the association kept alive.
    dtls: Option<DtlsState>,
    /// RFC 4733 towards the SIP party (when telephone-event was agreed).
    dtmf_out: Option<dtmf_rfc4733::Sender>,
    /// DTMF in SIP INFO towards the SIP party, when telephone-event was not agreed (until the
    /// party refuses an INFO).
    dtmf_info: dtmf_rfc4733::InfoSender,
    /// RFC 4733 from the SIP party (when telephone-event was agreed).
    dtmf_in: Option<dtmf_rfc4733::Receiver>,
    /// Keys pressed lately, for a party that sends each press both as RFC 4733 and in SIP INFO.
    presses: DtmfPresses,
    /// The `*6` toggle, fed by RFC 4733 and SIP INFO digits alike.
    star_six: dtmf_rfc4733::SequenceDetector,
    /// RTCP: our reports, the far end's.
    rtcp: crate::rtcp::Rtcp,
    /// The SSRC the SIP party's audio comes from.
    source: crate::rtcp::SourceLock,
    /// Our RTCP BYE went out (we are hanging up): no RTP or report follows it (RFC 3550 §6.6).
    said_bye: bool,
    /// Early media (a 183's answer, before the 2xx): the SIP party's audio is heard in the session;
    /// nothing is sent to it, and the media timeouts do not run.
    early: bool,
}

fn sdes_offer(secure: bool, suites: &[Suite]) -> (MediaSecurity, Vec<(Suite, MasterKey)>) {
    if !secure {
        return (MediaSecurity::None, Vec::new());
    }
    let mut keys = Vec::new();
    let mut offered = Vec::new();
    for &suite in suites {
        let mut raw = vec![0u8; suite.key_len() + suite.salt_len()];
        rand::thread_rng().fill_bytes(&mut raw);
        let mk = MasterKey {
            key: raw[..suite.key_len()].to_vec(),
            salt: raw[suite.key_len()..].to_vec(),
            mki: None,
            lifetime: None,
        };
        offered.push(SdesKey { suite: suite.sdes_name().into(), key_params: sdes::format_key_params(&mk) });
        keys.push((suite, mk));
    }
    (MediaSecurity::Sdes(offered), keys)
}

/// The SRTP contexts of an SDES agreement (`None` for plain RTP).
fn srtp_contexts(audio: &MediaAgreement) -> Result<Option<(Context, Context)>, String> {
    let Some(keys) = &audio.sdes else { return Ok(None) };
    let suite = Suite::from_sdes_name(&keys.suite).ok_or_else(|| format!("unknown SRTP suite {}", keys.suite))?;
    let theirs = sdes::parse_key_params(suite, &keys.remote_key_params).map_err(|e| e.to_string())?;
    let ours = sdes::parse_key_params(suite, &keys.local_key_params).map_err(|e| e.to_string())?;
    let inbound = Context::new(suite, &theirs, Options::default()).map_err(|e| e.to_string())?;
    let outbound = Context::new(suite, &ours, Options::default()).map_err(|e| e.to_string())?;
    Ok(Some((inbound, outbound)))
}

/// Follows a re-offer's SDES keys on a leg: a new key of the far end (RFC 4568 §7.1.4 lets a
/// re-offer re-key; SBCs do on transfers and re-anchoring) replaces the inbound context alone, so
/// our stream keeps its context and rollover counter; a new key of ours (another suite) replaces
/// both. `Ok(false)` when nothing changed.
pub(crate) fn follow_keys(leg: &LegHandle, old: &MediaAgreement, new: &MediaAgreement) -> Result<bool, String> {
    let (Some(o), Some(n)) = (&old.sdes, &new.sdes) else {
        return match (&old.sdes, &new.sdes) {
            (None, None) => Ok(false),
            _ => Err("a re-offer that adds or drops SDES keys".into()),
        };
    };
    let (theirs_kept, ours_kept) = kept_keys(o, n);
    if theirs_kept && ours_kept {
        return Ok(false);
    }
    let Some((inbound, outbound)) = srtp_contexts(new)? else {
        return Err("a re-offer without SDES keys on an SRTP call".into());
    };
    let sent = if ours_kept { leg.set_inbound_srtp(inbound) } else { leg.set_srtp(inbound, outbound) };
    sent.map_err(|e| e.to_string())?;
    Ok(true)
}

/// Whether a re-offer kept the far end's key and ours: the keys themselves, not how they are
/// written or tagged (a re-offer may renumber its crypto lines, or add a lifetime). A fresh
/// context for the same key would restart its rollover counter, and a call past a sequence wrap
/// would fail authentication.
fn kept_keys(old: &sdp_negotiation::SdesAgreement, new: &sdp_negotiation::SdesAgreement) -> (bool, bool) {
    let Some(suite) = Suite::from_sdes_name(&new.suite).filter(|_| old.suite == new.suite) else {
        return (false, false);
    };
    let same = |a: &str, b: &str| match (sdes::parse_key_params(suite, a), sdes::parse_key_params(suite, b)) {
        (Ok(x), Ok(y)) => x.key == y.key && x.salt == y.salt && x.mki == y.mki,
        _ => false,
    };
    (same(&old.remote_key_params, &new.remote_key_params), same(&old.local_key_params, &new.local_key_params))
}

/// Runs one call to its end.
pub(crate) async fn run(bridge: Arc<Inner>, spec: CallSpec, mut control: mpsc::UnboundedReceiver<Control>) {
    let ending = place(&bridge, &spec, &mut control).await;
    if spec.watching.load(std::sync::atomic::Ordering::Acquire) {
        bridge.video_left(&spec);
    }
    bridge.report(&spec, "callUpdated", json!({"state": "HANGUP"}));
    // The session forgets the SIP connection and stream before `callDestroyed` is reported, so
    // whoever acts on that event finds the session in its final state.
    if let Some(reason) = ending.disconnect {
        let _ = bridge.service.disconnect_as(&spec.session, &spec.connection.id, reason);
    }
    bridge.call_finished(&spec);
    info!(call = %spec.id, code = %ending.code, reason = %ending.message, "call ended");
    bridge.report(&spec, "callDestroyed", json!({"reason_code": ending.code, "reason_message": ending.message}));
}

async fn place(bridge: &Arc<Inner>, spec: &CallSpec, control: &mut mpsc::UnboundedReceiver<Control>) -> Ending {
    let normal = Some(DisconnectReason::ClientDisconnected);
    let sockets = match bridge.ports.bind(false).await {
        Ok(s) => s,
        Err(e) => return Ending::new(503, format!("no media port: {e}"), normal),
    };
    let local = match sockets.rtp_addr() {
        Ok(a) => a,
        Err(e) => return Ending::new(503, format!("media socket: {e}"), normal),
    };
    let wanted =
        bridge.config.srtp_offer_by_project.get(spec.project.as_str()).copied().unwrap_or(bridge.config.srtp_offer);
    let security = match (spec.sip.secure, wanted, &bridge.dtls_identity) {
        (true, crate::SrtpOffer::Dtls, Some(id)) => MediaSecurity::Dtls { fingerprint: id.fingerprint().to_owned() },
        (secure, _, _) => sdes_offer(secure, &bridge.config.sdes_suites).0,
    };
    // Video: its own RTP port (a SIP peer does not bundle), offered only when the dial asks.
    let mut video_sockets = None;
    let mut video_offer = None;
    if spec.sip.video && !bridge.config.video.codecs.is_empty() {
        match bridge.ports.bind(false).await {
            Ok(v) => match v.rtp_addr() {
                Ok(a) => {
                    video_offer = Some((a.port(), offered_video_codecs(&bridge.config.video.codecs)));
                    video_sockets = Some(v);
                }
                Err(e) => warn!(call = %spec.id, error = %e, "no video socket: offering audio only"),
            },
            Err(e) => warn!(call = %spec.id, error = %e, "no video port: offering audio only"),
        }
    }
    let options = OfferOptions {
        address: bridge.config.media_address.unwrap_or(local.ip()),
        audio_port: local.port(),
        audio_codecs: bridge.config.audio_codecs.clone(),
        video: video_offer,
        telephone_event: true,
        ptime: Some(20),
        rtcp_mux: true,
        security,
        video_receive_bitrate: bridge.config.video.receive_bitrate.map(u64::from),
        // Of a re-offer's several keys, one that makes an SRTP context.
        sdes_key_check: Some(sdp_negotiation::SdesKeyCheck(|suite, params| {
            Suite::from_sdes_name(suite).is_some_and(|s| sdes::parse_key_params(s, params).is_ok())
        })),
    };
    let mut sdp = LocalSession::new(options, rand::thread_rng().gen_range(1..u64::from(u32::MAX)));
    let offer = sdp.create_offer();
    let dial = Dial {
        uri: spec.sip.uri.clone(),
        from: spec.sip.from.clone(),
        display_name: None,
        headers: spec.sip.headers.clone(),
        credentials: spec.sip.auth.as_ref().map(|(u, p)| Credentials { username: u.clone(), password: p.clone() }),
        sdp: Some(Bytes::from(offer.to_bytes())),
    };
    // The far end's address (DNS may take seconds): a hang-up meanwhile sends no INVITE at all,
    // rather than making the far end ring for a call already over. What else comes meanwhile (a
    // session-wide mute applied to the new stream) is handled once the call is placed.
    let mut early_controls = std::collections::VecDeque::new();
    let targets = {
        let resolving = bridge.sip.targets(&dial);
        tokio::pin!(resolving);
        loop {
            tokio::select! {
                r = &mut resolving => break r,
                c = control.recv() => match c {
                    Some(Control::ForceDisconnected) => {
                        return Ending::new(700, "Normal Clearing (force disconnect before the INVITE)", None);
                    }
                    Some(c @ (Control::SessionEnded | Control::Shutdown)) => {
                        return Ending::new(700, format!("Normal Clearing ({c:?} before the INVITE)"), normal);
                    }
                    None => return Ending::new(700, "Normal Clearing (before the INVITE)", normal),
                    Some(other) => early_controls.push_back(other),
                },
            }
        }
    };
    let placed = match targets {
        Ok(t) => bridge.sip.call_to(dial, t).await,
        Err(e) => Err(e),
    };
    let mut call = match placed {
        Ok(c) => c,
        Err(e) => return Ending::new(503, format!("cannot place the call: {e}"), normal),
    };
    debug!(call = %spec.id, target = ?call.target, "INVITE sent");
    let mut sockets = Some(sockets);
    let mut media: Option<Media> = None;
    let mut video: Option<VideoHandle> = None;
    // RFC 5168 keyframe requests sent to the party.
    let mut fast_updates = FastUpdateInfos::default();
    // Our INFO waiting for its answer (the agent reports answers without saying to which INFO),
    // and a keyframe request that came while it was out.
    let mut info_in_flight: Option<InfoKind> = None;
    let mut keyframe_info_owed = false;
    let mut rang = false;
    let mut announce_on_answer = false;
    // The video part of an early answer, for a 2xx that leaves its SDP out.
    let mut early_video: Option<MediaAgreement> = None;
    // The last answer a 183 carried, played or not (with 100rel it is the answer: the 2xx may
    // leave it out even when early media could not start, as with DTLS-SRTP).
    let mut early_answer: Option<Agreement> = None;
    // Media host names looked up so far (see `resolve_hosts`).
    let mut names = MediaNames::default();
    let mut hangup_cause: Option<Control> = None;
    let mut abandon = bridge.abandon.subscribe();
    let mut tick = tick_for(sdp_negotiation::Codec::Pcmu);
    let started = Instant::now();
    loop {
        // DTMF in SIP INFO (no telephone-event agreed): when the next key is due.
        let info_due = media
            .as_ref()
            .filter(|m| m.dtmf_out.is_none() && info_in_flight.is_none() && !m.early)
            .and_then(|m| m.dtmf_info.poll_timeout(Instant::now()));
        tokio::select! {
            ev = call.events.recv() => {
                let Some(ev) = ev else {
                    if let Some(m) = media.as_mut() {
                        close_media(bridge, spec, m).await;
                    }
                    return Ending::new(703, "Unexpected Clearing: the SIP stack stopped", normal);
                };
                match ev {
                    CallEvent::Trying => {}
                    CallEvent::Ringing { .. } | CallEvent::Progress { .. } => {
                        if !rang && hangup_cause.is_none() {
                            rang = true;
                            bridge.report(spec, "callUpdated", json!({"state": "RINGING"}));
                        }
                        // Early media (RFC 3960, the gateway model): the SIP party's ringback or
                        // announcement ("the number you have dialled...") is heard in the session
                        // before the answer. Nothing is sent to it before the answer.
                        if let (CallEvent::Progress { sdp: Some(early) }, None) = (&ev, &hangup_cause) {
                            let early = match sdp.process_answer(early) {
                                Ok(mut a) => {
                                    resolve_hosts(&spec.id, &mut names, &mut a).await;
                                    Ok(a)
                                }
                                Err(e) => Err(e),
                            };
                            if let Ok(a) = &early {
                                early_answer = Some(a.clone());
                            }
                            match (media.as_mut(), early) {
                                // A later 183 (another announcement, or another branch) replaces
                                // the preview (RFC 6337: without 100rel each is one).
                                (Some(m), Ok(a)) if m.early => {
                                    early_video = a.video.clone();
                                    follow_agreement(bridge, spec, Some(m), None, Agreement { audio: a.audio, video: None }, &mut tick);
                                }
                                (Some(_), _) => {}
                                (None, Ok(a)) => match early_usable(&a) {
                                    // Checked before the sockets are handed over: a 183 that cannot
                                    // be used leaves them to the answer.
                                    Ok(()) => {
                                        early_video = a.video.clone();
                                        match start_media(bridge, spec, a, sockets.take()) {
                                            Ok(mut m) => {
                                                m.early = true;
                                                tick = tick_for(m.agreement.codec);
                                                info!(call = %spec.id, codec = ?m.agreement.codec, "early media from the SIP party");
                                                media = Some(m);
                                            }
                                            Err(why) => warn!(call = %spec.id, %why, "early media failed"),
                                        }
                                    }
                                    Err(why) => info!(call = %spec.id, %why, "early media not played: waiting for the answer"),
                                },
                                (None, Err(e)) => warn!(call = %spec.id, error = %e, "unusable early media: waiting for the answer"),
                            }
                        }
                    }
                    // Answered as we hung up (the 200 crossed our CANCEL, or came before the
                    // hang-up was acted on): the SIP layer ends the dialog; no media starts.
                    CallEvent::Answered { .. } if hangup_cause.is_some() => {
                        info!(call = %spec.id, "answered after our hang-up: no media");
                    }
                    CallEvent::Answered { sdp: answer } => {
                        let early = media.take();
                        let agreed = match (answer, &early) {
                            // The 2xx of early media may leave its answer out (it was in the 183).
                            (None, Some(m)) => Ok(Agreement { audio: Some(m.agreement.clone()), video: early_video.take() }),
                            // Or in a 183 whose media did not start (DTLS-SRTP waits for the answer).
                            (None, None) if early_answer.is_some() => early_answer.take().ok_or_else(|| "no SDP answer".to_owned()),
                            (answer, _) => answer.ok_or_else(|| "no SDP answer".to_owned()).and_then(|a| sdp.process_answer(&a).map_err(|e| e.to_string())),
                        };
                        let agreed = match agreed {
                            Ok(mut a) => {
                                resolve_hosts(&spec.id, &mut names, &mut a).await;
                                Ok(a)
                            }
                            Err(e) => Err(e),
                        };
                        let video_agreed = agreed.as_ref().ok().and_then(|a| a.video.clone());
                        let answered = match (early, agreed) {
                            // The answer confirms early media, or changes it (another branch of a fork
                            // answered, or the 2xx says otherwise): followed as a re-offer would be.
                            (Some(mut m), Ok(a)) => {
                                m.early = false;
                                // The answer's hold state is the call's first: ACTIVE (or held)
                                // is reported below, not a change from the 183's preview.
                                if let Some(audio) = &a.audio {
                                    m.on_hold = audio.remote_hold;
                                }
                                follow_agreement(bridge, spec, Some(&mut m), None, Agreement { audio: a.audio, video: None }, &mut tick);
                                let now = Instant::now();
                                m.answered = now;
                                m.last_rtp = m.last_rtp.map(|_| now);
                                Ok(m)
                            }
                            // An answer that cannot be used ends the early media properly too
                            // (its quality recorded, its leg closed).
                            (Some(mut m), Err(e)) => {
                                close_media(bridge, spec, &mut m).await;
                                Err(e)
                            }
                            (None, agreed) => agreed.and_then(|a| start_media(bridge, spec, a, sockets.take())),
                        };
                        match answered {
                            Ok(m) => {
                                tick = tick_for(m.agreement.codec);
                                dtmf_ready(spec, &m);
                                media = Some(m);
                                video = match (video_agreed, video_sockets.take()) {
                                    (Some(agreed), Some(sockets)) => {
                                        let cname = media.as_ref().map(|m| m.rtcp.cname().to_vec()).unwrap_or_default();
                                        start_video(bridge, spec, agreed, sockets, cname)
                                    }
                                    (None, Some(_)) => {
                                        info!(call = %spec.id, "the SIP party declined video: an audio-only call");
                                        None
                                    }
                                    _ => None,
                                };
                                if video.is_none() {
                                    // Its port is closed: a re-offer bringing video back is
                                    // answered with it rejected, not on that port.
                                    sdp.stop_carrying("video");
                                }
                                bridge.report(spec, "callUpdated", json!({"state": "ACTIVE"}));
                                if media.as_ref().is_some_and(|m| m.on_hold) {
                                    // Answered on hold (a 2xx with sendonly, inactive or c=0.0.0.0):
                                    // said so, so the resume that follows reads as one.
                                    bridge.report(spec, "callUpdated", json!({"state": "ON_HOLD"}));
                                }
                                if announce_on_answer {
                                    announce(bridge, spec, media_mixer::Prompt::YouHaveBeenMuted);
                                }
                                info!(call = %spec.id, "call answered");
                            }
                            Err(why) => {
                                warn!(call = %spec.id, %why, "unusable answer; hanging up");
                                let _ = bridge.sip.hangup(call.handle).await;
                                let _ = wait_end(&mut call.events, &mut abandon).await;
                                return Ending::new(488, format!("Not Acceptable Here: {why}"), normal);
                            }
                        }
                    }
                    CallEvent::Failed { code, reason } => {
                        // The end of early media (an announcement before a 404, or ringback before a
                        // 486): its leg goes.
                        if let Some(m) = media.as_mut() {
                            close_media(bridge, spec, m).await;
                        }
                        let disconnect = disconnect_after(&hangup_cause);
                        if let Some(c) = &hangup_cause {
                            return Ending::new(700, format!("Normal Clearing ({c:?} while ringing; {code} {reason})"), disconnect);
                        }
                        return Ending::new(code, reason, disconnect);
                    }
                    CallEvent::Ended { reason } => {
                        if let Some(m) = media.as_mut() {
                            close_media(bridge, spec, m).await;
                        }
                        return match (reason, hangup_cause) {
                            (_, Some(Control::ForceDisconnected)) => Ending::new(700, "Normal Clearing (force disconnect)", None),
                            (_, Some(c)) => Ending::new(700, format!("Normal Clearing ({c:?})"), normal),
                            (EndReason::RemoteHangup | EndReason::LocalHangup, None) => Ending::new(700, "Normal Clearing", normal),
                            // Rang out; its late answer was ended at once (as a 487 would have).
                            (EndReason::NoAnswer, None) => Ending::new(408, "Request Timeout (no answer)", normal),
                            (other, None) => Ending::new(703, format!("Unexpected Clearing: {other:?}"), Some(DisconnectReason::NetworkDisconnected)),
                        };
                    }
                    CallEvent::RemoteOffer { sdp: offer, .. } => {
                        video_ended(spec, &mut video, &mut sdp);
                        // A re-offer whose SDES keys cannot be used (the negotiation checks them
                        // with `sdes_key_check`) is refused, the negotiation left as it was.
                        match sdp.answer_offer(&offer) {
                            Ok((answer, mut agreement)) => {
                                let _ = bridge.sip.answer(call.handle, Bytes::from(answer.to_bytes())).await;
                                resolve_hosts(&spec.id, &mut names, &mut agreement).await;
                                follow_agreement(bridge, spec, media.as_mut(), video.as_ref(), agreement, &mut tick);
                            }
                            Err(e) => {
                                warn!(call = %spec.id, error = %e, "the far end's re-offer refused");
                                let _ = bridge.sip.reject_offer(call.handle, e.sip_status(), "Not Acceptable Here").await;
                            }
                        }
                    }
                    CallEvent::OfferRequested => {
                        video_ended(spec, &mut video, &mut sdp);
                        let _ = bridge.sip.answer(call.handle, Bytes::from(sdp.create_offer().to_bytes())).await;
                    }
                    // The answer to the offer we made in the 200 to an offerless re-INVITE (hold,
                    // transfer and re-anchoring by third-party call control).
                    CallEvent::RemoteAnswer { sdp: answer } => match sdp.process_answer(&answer) {
                        Ok(mut agreement) => {
                            resolve_hosts(&spec.id, &mut names, &mut agreement).await;
                            follow_agreement(bridge, spec, media.as_mut(), video.as_ref(), agreement, &mut tick)
                        }
                        Err(sdp_negotiation::NegotiationError::AudioRejected) => {
                            if let Some(m) = media.as_mut() {
                                remove_audio(spec, m);
                            }
                        }
                        Err(e) => warn!(call = %spec.id, error = %e, "unusable answer to our re-offer: the media stays as it was"),
                    },
                    CallEvent::Info { content_type, body } => {
                        let content_type = content_type.as_deref().unwrap_or("");
                        if crate::video::asks_picture_fast_update(content_type, &body) {
                            // RFC 5168: the party's decoder wants a keyframe (endpoints that
                            // never send PLI or FIR ask this way).
                            if let Some(v) = video.as_ref() {
                                let _ = v.control.send(VideoControl::Keyframe);
                            }
                        } else {
                            report_info_digit(bridge, spec, media.as_mut(), content_type, &body);
                        }
                    }
                    // The answer to our INFO in flight (one at a time: keys or a keyframe request).
                    CallEvent::InfoResponse { code } => {
                        match info_in_flight.take() {
                            Some(InfoKind::Keyframe) => {
                                if fast_updates.answered(code) {
                                    info!(call = %spec.id, code, "the SIP party refuses keyframe requests by INFO: RTCP only from now on");
                                }
                            }
                            Some(InfoKind::Dtmf) => {
                                if let Some(m) = media.as_mut() {
                                    if let dtmf_rfc4733::InfoOutcome::Refused { dropped } = m.dtmf_info.handle_response(Instant::now(), code) {
                                        warn!(call = %spec.id, code, dropped, "the SIP party refuses DTMF in SIP INFO (and agreed to no telephone-event): play-dtmf refuses digits for it from now on");
                                    }
                                    dtmf_ready(spec, m);
                                }
                            }
                            None => debug!(call = %spec.id, code, "an answer to no INFO of ours"),
                        }
                        if std::mem::take(&mut keyframe_info_owed) && info_in_flight.is_none() {
                            ask_keyframe_by_info(bridge, spec, call.handle, &mut fast_updates, &mut info_in_flight).await;
                        }
                    }
                    other => debug!(call = %spec.id, ?other, "call event"),
                }
            }
            // Hung up, and the gateway stops before the far end confirmed: ended here.
            _ = async { abandon.wait_for(|a| *a).await.map(|_| ()) }, if hangup_cause.is_some() => {
                if let Some(m) = media.as_mut() {
                    close_media(bridge, spec, m).await;
                }
                let disconnect = disconnect_after(&hangup_cause);
                return Ending::new(700, "Normal Clearing (gateway shutdown; the far end had not confirmed the end)", disconnect);
            }
            c = async { match early_controls.pop_front() { Some(c) => Some(c), None => control.recv().await } }, if hangup_cause.is_none() => {
                match c {
                    Some(Control::MuteForced) => {
                        if spec.sip.observe_force_mute {
                            bridge.report(spec, "muteForced", json!({}));
                            if media.as_ref().is_some_and(|m| !m.early) {
                                announce(bridge, spec, media_mixer::Prompt::YouHaveBeenMuted);
                            } else {
                                // Muted before the answer (a session-wide mute in force, or during
                                // early media, when nothing is sent): told once it is up.
                                announce_on_answer = true;
                            }
                        }
                    }
                    Some(Control::Dtmf(digits)) => {
                        // `play-dtmf` reserved their room in the sender's queue.
                        if let Ok(mut d) = spec.dtmf.lock() {
                            d.reserved = d.reserved.saturating_sub(digits.chars().count());
                        }
                        if let Some(m) = media.as_mut() {
                            let (queued, how) = match m.dtmf_out.as_mut() {
                                Some(sender) => (sender.enqueue(&digits), "RFC 4733"),
                                // No telephone-event agreed: in SIP INFO.
                                None => (m.dtmf_info.enqueue(Instant::now(), &digits), "SIP INFO"),
                            };
                            match queued {
                                Err(e) => warn!(call = %spec.id, error = %e, "DTMF not queued"),
                                Ok(()) => info!(call = %spec.id, digits = digits.len(), how, "DTMF queued"),
                            }
                            dtmf_ready(spec, m);
                        }
                    }
                    other => {
                        let cause = other.unwrap_or(Control::Shutdown);
                        hangup_cause = Some(cause.clone());
                        info!(call = %spec.id, ?cause, "hanging up");
                        // The media says goodbye first (RFC 3550 §6.6): the far end hears of it
                        // before the SIP BYE, not after its 200, and gets no media after it.
                        if let Some(m) = media.as_mut() {
                            rtcp_bye(m);
                        }
                        video = None;
                        let _ = bridge.sip.hangup(call.handle).await;
                    }
                }
            }
            ask = async {
                match video.as_mut() {
                    Some(v) => v.asks.recv().await,
                    None => std::future::pending().await,
                }
            } => match ask {
                // One INFO at a time: a keyframe request while a key is in flight goes when its
                // answer comes.
                Some(VideoAsk::PictureFastUpdate) if info_in_flight.is_none() => {
                    ask_keyframe_by_info(bridge, spec, call.handle, &mut fast_updates, &mut info_in_flight).await;
                }
                Some(VideoAsk::PictureFastUpdate) => keyframe_info_owed = true,
                None => {
                    video_ended(spec, &mut video, &mut sdp);
                }
            },
            _ = sleep_until_opt(info_due), if info_due.is_some() => {
                if let Some(m) = media.as_mut() {
                    if let Some(body) = m.dtmf_info.poll_info(Instant::now()) {
                        if bridge.sip.info(call.handle, dtmf_rfc4733::DTMF_RELAY, Bytes::from(body)).await.is_ok() {
                            info_in_flight = Some(InfoKind::Dtmf);
                        } else {
                            m.dtmf_info.handle_not_sent();
                        }
                        dtmf_ready(spec, m);
                    }
                }
            }
            input = recv_media(&mut media) => {
                if let Some(m) = media.as_mut() {
                    match input {
                        MediaIn::Mix(Some(frame)) if m.dtls.as_ref().is_some_and(|d| !d.ready) => {
                            // No media in clear while the DTLS-SRTP keys are not there yet; its
                            // time passes all the same.
                            skip_audio(m, &frame);
                        }
                        MediaIn::Packet(Some(Inbound::Rtp(_))) if m.dtls.as_ref().is_some_and(|d| !d.ready) => {}
                        MediaIn::Mix(Some(frame)) => {
                            let queued = m.dtmf_out.as_ref().map(dtmf_rfc4733::Sender::queued);
                            send_audio(m, &frame);
                            if m.dtmf_out.as_ref().map(dtmf_rfc4733::Sender::queued) != queued {
                                // A digit started: room for more.
                                dtmf_ready(spec, m);
                            }
                        }
                        MediaIn::Packet(Some(Inbound::Dtls(record))) => {
                            if let Some(d) = m.dtls.as_ref() {
                                let _ = d.to_handshake.try_send(record);
                            }
                        }
                        MediaIn::Packet(Some(p)) => receive(bridge, spec, m, p),
                        MediaIn::DtlsOut(record) => {
                            let _ = m.leg.send_raw(record);
                        }
                        MediaIn::DtlsClosed => {
                            if let Some(d) = m.dtls.as_mut() {
                                d.records_open = false;
                            }
                        }
                        MediaIn::DtlsDone(done) => match (*done).and_then(|(keys, association)| {
                            match m.dtls.as_mut().map(|d| d.keyed(&m.leg, &keys, association)) {
                                Some(Err(e)) => Err(format!("unusable keys: {e}")),
                                _ => Ok(keys.suite),
                            }
                        }) {
                        Ok(suite) => info!(call = %spec.id, ?suite, "DTLS-SRTP established"),
                        // A handshake that failed, or keys that make no SRTP context (the latter
                        // left unhandled would poll the finished handshake again).
                        Err(why) => {
                            warn!(call = %spec.id, %why, "DTLS-SRTP handshake failed; hanging up");
                            say_goodbye(bridge, spec, m);
                            let _ = bridge.sip.hangup(call.handle).await;
                            let _ = wait_end(&mut call.events, &mut abandon).await;
                            let _ = m.leg.shutdown().await;
                            return Ending::new(488, format!("Not Acceptable Here: DTLS-SRTP failed ({why})"), normal);
                        }
                        },
                        // The leg or the mixer stopped: the timeouts take it from here.
                        MediaIn::Mix(None) | MediaIn::Packet(None) => {}
                    }
                }
            }
            _ = tick.tick() => {
                if let Some(m) = media.as_mut() {
                    play_inbound(bridge, spec, m);
                    send_rtcp(m);
                    if let Some(why) = timed_out(bridge, m, started) {
                        if hangup_cause.is_none() {
                            warn!(call = %spec.id, code = why.0, "media timeout; hanging up");
                            // The media's end first: the SIP hang-up may take a while.
                            say_goodbye(bridge, spec, m);
                            let _ = bridge.sip.hangup(call.handle).await;
                            let _ = wait_end(&mut call.events, &mut abandon).await;
                            let _ = m.leg.shutdown().await;
                            return Ending::new(why.0, why.1, normal);
                        }
                    }
                }
            }
        }
    }
}

/// The media's goodbye (RTCP BYE, quality reported) and its leg closed.
async fn close_media(bridge: &Arc<Inner>, spec: &CallSpec, m: &mut Media) {
    say_goodbye(bridge, spec, m);
    let _ = m.leg.shutdown().await;
}

/// How the session lets go of the SIP connection of a call we hung up for `cause`: a force
/// disconnect has done it already.
fn disconnect_after(cause: &Option<Control>) -> Option<DisconnectReason> {
    match cause {
        Some(Control::ForceDisconnected) => None,
        _ => Some(DisconnectReason::ClientDisconnected),
    }
}

/// Waits (boundedly) for the final event after we hung up.
async fn wait_end(
    events: &mut mpsc::UnboundedReceiver<CallEvent>,
    abandon: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<CallEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(35);
    let finished = async {
        while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, events.recv()).await {
            if ev.is_final() {
                return Some(ev);
            }
        }
        None
    };
    tokio::select! {
        ev = finished => ev,
        // The gateway stops and its wait for calls ran out: not waited for any longer.
        _ = async { abandon.wait_for(|a| *a).await.map(|_| ()) } => None,
    }
}

/// What the media of an answered call produced.
enum MediaIn {
    /// 20 ms of what this call hears.
    Mix(Option<ListenerFrame>),
    /// A packet from the SIP side.
    Packet(Option<Inbound>),
    /// A DTLS record the handshake wants sent.
    DtlsOut(Vec<u8>),
    /// The association's record channel closed.
    DtlsClosed,
    /// The DTLS-SRTP handshake finished.
    DtlsDone(Box<Result<(srtp_transport::dtls::DtlsKeys, srtp_transport::dtls::DtlsSession), String>>),
}

async fn recv_media(media: &mut Option<Media>) -> MediaIn {
    match media {
        Some(m) => {
            let (mix, inbound) = (&mut m.mix, &mut m.inbound);
            // The association's records are forwarded for the whole call, not only during the
            // handshake: its last flight may still be queued when the handshake reports success,
            // and it answers the peer's retransmissions afterwards.
            let (records, done) = match m.dtls.as_mut() {
                Some(DtlsState { from_handshake, done, ready, records_open, .. }) => {
                    (records_open.then_some(from_handshake), (!*ready).then_some(done))
                }
                None => (None, None),
            };
            let (has_records, handshaking) = (records.is_some(), done.is_some());
            // A channel that closed is not polled again: it would win every round of the biased
            // select and starve the far end's packets.
            let (mix_open, inbound_open) =
                (!(mix.is_closed() && mix.is_empty()), !(inbound.is_closed() && inbound.is_empty()));
            tokio::select! {
                // Records first: the last flight goes out before the success is acted on.
                biased;
                r = async { records?.recv().await }, if has_records => match r {
                    Some(record) => MediaIn::DtlsOut(record),
                    // The association is gone: stop listening to it, go on with the media.
                    None => MediaIn::DtlsClosed,
                },
                f = mix.recv(), if mix_open => MediaIn::Mix(f),
                p = inbound.recv(), if inbound_open => MediaIn::Packet(p),
                d = async {
                    match done {
                        Some(d) => d.await.unwrap_or_else(|_| Err("the handshake task ended".into())),
                        None => std::future::pending().await,
                    }
                }, if handshaking => MediaIn::DtlsDone(Box::new(d)),
                // Nothing left to read: the call's other branches (the tick, SIP) go on.
                else => std::future::pending::<MediaIn>().await,
            }
        }
        None => std::future::pending().await,
    }
}

fn start_media(
    bridge: &Arc<Inner>,
    spec: &CallSpec,
    agreement: Agreement,
    sockets: Option<MediaSockets>,
) -> Result<Media, String> {
    let audio = agreement.audio.ok_or("the answer accepts no audio")?;
    let mut codec = audio_codec(&audio)?;
    let sockets = sockets.ok_or("media sockets already used")?;
    let (leg, inbound, dtls) = open_leg(bridge, &audio, sockets)?;
    let mix = listen(bridge, spec, &audio, &codec)?;
    // The far end's packet time (`a=ptime`), where the codec allows it.
    let ptime = codec.set_packet_time(audio.ptime);
    debug!(call = %spec.id, asked = ?audio.ptime, ptime, "packet time towards the SIP party");
    let jitter = JitterBuffer::new(JitterConfig { clock_rate: codec.rtp_clock(), ..JitterConfig::default() });
    let publish = OpusEncoder::new(OpusEncoderConfig::default()).map_err(|e| e.to_string())?;
    let now = Instant::now();
    let ssrc = rand::random();
    let rtcp = crate::rtcp::Rtcp::new(ssrc, codec.rtp_clock(), bridge.config.rtcp_interval, now);
    let (dtmf_out, dtmf_in) = dtmf_for(&audio);
    Ok(Media {
        leg,
        inbound,
        on_hold: audio.remote_hold,
        removed: false,
        talkspurt: true,
        agreement: audio,
        codec,
        jitter,
        rtp_in: TimestampExtender::new(),
        g722_clock: G722Clock::default(),
        decoded: Vec::with_capacity(2 * crate::codec::FRAME_48K),
        mix,
        ssrc,
        seq: rand::random(),
        timestamp: rand::random(),
        publish,
        publish_time: PUBLISH_START,
        first_rtp: None,
        last_rtp: None,
        answered: now,
        last_opus_ts: None,
        dtmf_out,
        dtmf_info: dtmf_rfc4733::InfoSender::new(&dtmf_rfc4733::SenderConfig::default()),
        dtmf_in,
        presses: DtmfPresses::default(),
        star_six: dtmf_rfc4733::SequenceDetector::star_six(),
        dtls,
        rtcp,
        source: crate::rtcp::SourceLock::default(),
        said_bye: false,
        early: false,
    })
}

/// The far end removed the audio stream (port 0): it gets nothing more on it (RFC 3264 §8.2).
fn remove_audio(spec: &CallSpec, m: &mut Media) {
    if !m.removed {
        warn!(call = %spec.id, "the far end removed the audio stream (port 0): nothing more is sent on it");
        m.removed = true;
    }
}

/// Whether RTCP may go to the far end now: not after our BYE, not before the answer (nothing is
/// sent before it), not on a removed stream, never in clear before the DTLS-SRTP keys are in place.
fn may_send_rtcp(m: &Media) -> bool {
    !m.said_bye && !m.early && !m.removed && m.dtls.as_ref().is_none_or(|d| d.ready)
}

/// Our RTCP report, when one is due (see [`may_send_rtcp`]).
fn send_rtcp(m: &mut Media) {
    if !may_send_rtcp(m) {
        return;
    }
    if let Some(report) = m.rtcp.due(Instant::now(), std::time::SystemTime::now()) {
        let _ = m.leg.send_rtcp(report);
    }
}

/// The end of the call's media: a last report with an RTCP BYE (RFC 3550 §6.6), and what both ends
/// saw of the audio, in the log and to the reporter.
fn say_goodbye(bridge: &Arc<Inner>, spec: &CallSpec, m: &mut Media) {
    rtcp_bye(m);
    let (jb, far) = (m.jitter.stats(), m.rtcp.far_end);
    let (packets_received, packets_lost, jitter) = m.rtcp.received();
    let quality = crate::CallQuality {
        packets_received,
        packets_lost,
        concealed: Duration::from_secs_f64(jb.concealed as f64 / f64::from(m.codec.rtp_clock())),
        trimmed_packets: jb.trimmed,
        jitter,
        far_end_reports: m.rtcp.reports_received,
        far_end_lost: i64::from(far.cumulative_lost),
        far_end_jitter: far.jitter,
        round_trip: far.round_trip,
    };
    info!(call = %spec.id, ?quality, "call audio");
    bridge.reporter.call_quality(&spec.project, &quality);
}

/// Our stream's last report with its RTCP BYE, once, as we leave (when RTCP may go at all, see
/// [`may_send_rtcp`]: none for early media, to which we never sent anything); nothing is sent on
/// the stream after it.
fn rtcp_bye(m: &mut Media) {
    if m.said_bye {
        return;
    }
    if may_send_rtcp(m) {
        let _ = m.leg.send_rtcp(m.rtcp.bye(Instant::now(), std::time::SystemTime::now()));
    }
    m.said_bye = true;
}

/// Sends one RTP packet of the call's stream (audio or telephone-event: one SSRC, one sequence).
fn send_rtp(m: &mut Media, payload_type: u8, marker: bool, timestamp: u32, payload: &[u8]) {
    if m.said_bye || m.removed {
        return;
    }
    let mut packet = Vec::with_capacity(12 + payload.len() + 16);
    let header = RtpHeader { marker, payload_type, seq: m.seq, timestamp, ssrc: m.ssrc, ..RtpHeader::default() };
    if header.write(payload, 0, &mut packet).is_ok() && m.leg.send_rtp(packet).is_ok() {
        let event = m.agreement.telephone_event.is_some_and(|(te, _)| te == payload_type);
        m.rtcp.on_sent(Instant::now(), timestamp, payload.len(), !event);
    }
    m.seq = m.seq.wrapping_add(1);
}

/// The session's mix, encoded in the call's codec, in packets of the far end's packet time (a tick
/// may bring none, one or several); while digits play, their telephone-events go instead (RFC 4733
/// §2.5.1.1: no audio for the duration of an event). `m.timestamp` is the RTP time of the first
/// sample not sent yet: it advances with the media's time whether or not anything is sent.
/// A frame's duration in the RTP clock: 20 ms for the mix, the packet's own length for forwarded
/// Opus (whose clock is 48 kHz, RFC 7587).
fn frame_step(m: &Media, frame: &ListenerFrame) -> u32 {
    match frame {
        ListenerFrame::Pcm { .. } => m.codec.rtp_step(),
        ListenerFrame::Opus { samples, .. } => *samples,
        // Counted at 48 kHz; in the codec's clock (the same for Opus, the only codec forwarded).
        ListenerFrame::Idle { samples } => (u64::from(*samples) * u64::from(m.codec.rtp_step()) / 960) as u32,
    }
}

/// A frame that cannot be sent: its time passes (the mix not sent yet is dropped with it) and
/// the next packet starts a talkspurt.
fn skip_audio(m: &mut Media, frame: &ListenerFrame) {
    let step = frame_step(m, frame);
    m.timestamp = m.timestamp.wrapping_add(m.codec.discard_pending()).wrapping_add(step);
    m.talkspurt = true;
}

/// Sends one audio packet, with the marker bit when it starts a talkspurt.
fn send_audio_packet(m: &mut Media, payload_type: u8, payload: &[u8]) {
    let (marker, ts) = (m.talkspurt, m.timestamp);
    send_rtp(m, payload_type, marker, ts, payload);
    m.talkspurt = false;
}

fn send_audio(m: &mut Media, frame: &ListenerFrame) {
    let step = frame_step(m, frame);
    // RFC 3264 §6.1: nothing goes to a far end that holds the call (our recvonly or inactive);
    // nothing before the answer either (early media is the far end's), nor on a removed stream.
    let sending = media_sending(m);
    if let (Some(sender), Some((te, _))) = (m.dtmf_out.as_mut(), m.agreement.telephone_event) {
        let now = Instant::now();
        let at = m.timestamp.wrapping_add(m.codec.pending());
        let mut events = Vec::new();
        while let Some(p) = sender.poll_packet(now, at) {
            events.push(p);
        }
        let busy = sender.is_sending() || !events.is_empty();
        for p in events.into_iter().filter(|_| sending) {
            send_rtp(m, te, p.marker, p.timestamp, &p.payload);
        }
        if busy {
            skip_audio(m, frame);
            return;
        }
    }
    let pt = m.agreement.payload_type;
    match frame {
        ListenerFrame::Pcm { rate, pcm } => {
            m.codec.push_mix(pcm, *rate);
            let mut payload = Vec::with_capacity(500);
            while m.codec.next_packet(&mut payload) {
                if sending && !payload.is_empty() {
                    send_audio_packet(m, pt, &payload);
                } else {
                    // Not sent (held, or a DTX silence): what follows starts a talkspurt.
                    m.talkspurt = true;
                }
                m.timestamp = m.timestamp.wrapping_add(m.codec.packet_step());
            }
        }
        // Opus heard from one stream: forwarded as it is.
        ListenerFrame::Opus { packet, .. } => {
            if sending {
                send_audio_packet(m, pt, packet);
            } else {
                m.talkspurt = true;
            }
            m.timestamp = m.timestamp.wrapping_add(step);
        }
        ListenerFrame::Idle { .. } => {
            m.timestamp = m.timestamp.wrapping_add(step);
            m.talkspurt = true;
        }
    }
}

/// Tells a far end that stamps G.722 with its 16 kHz sample clock (a common fault: RFC 3551 keeps
/// G.722's RTP clock at 8 kHz) from one that does not. Eight packets in a row, each following the
/// one before by sequence number, whose timestamps step by twice their duration switch to 16 kHz;
/// eight that step by their duration switch back (a source that changed behind the far end, or a
/// misreading); a new SSRC starts over at 8 kHz. Lost or reordered packets count neither way.
#[derive(Debug, Default)]
struct G722Clock {
    ssrc: Option<u32>,
    /// The last packet: sequence number, timestamp, duration (8 kHz).
    last: Option<(u16, u32, u32)>,
    /// Consecutive steps that say the other clock.
    run: u8,
    at_16k: bool,
}

/// Consecutive steps that switch the reading.
const G722_RUN: u8 = 8;

impl G722Clock {
    /// A packet; true when the reading changed with it (its timestamps are then halved, or no
    /// longer).
    fn observe(&mut self, ssrc: u32, seq: u16, timestamp: u32, duration: u32) -> bool {
        if self.ssrc != Some(ssrc) {
            let was = self.at_16k;
            *self = G722Clock { ssrc: Some(ssrc), last: Some((seq, timestamp, duration)), ..G722Clock::default() };
            return was;
        }
        let Some((last_seq, last_ts, last_duration)) = self.last.replace((seq, timestamp, duration)) else {
            return false;
        };
        if seq != last_seq.wrapping_add(1) {
            return false;
        }
        let step = timestamp.wrapping_sub(last_ts);
        let other = if self.at_16k { last_duration } else { last_duration.saturating_mul(2) };
        self.run = if step == other { self.run + 1 } else { 0 };
        if self.run < G722_RUN {
            return false;
        }
        self.at_16k = !self.at_16k;
        self.run = 0;
        true
    }

    /// What the timestamps are divided by.
    fn scale(&self) -> u32 {
        if self.at_16k {
            2
        } else {
            1
        }
    }
}

/// Where the SIP party's published clock starts: room behind the first packet for the ones
/// reordered before it (as `TimestampExtender` leaves), which must keep their own earlier times.
const PUBLISH_START: u64 = 1 << 32;

/// The session-side RTP time of an Opus packet from the SIP party whose own RTP timestamp is `ts`:
/// the publishing clock moves with the timestamps (as a signed distance, wrap-around included);
/// a packet that arrives behind the newest (reordered, or repeated) keeps its own place behind it
/// without moving the clock, so the session's mixer puts it back in order or drops the duplicate;
/// a step of a minute or more either way (a new source behind the far end) moves the clock on
/// by one packet.
fn opus_publish_time(publish_time: &mut u64, last_ts: &mut Option<u32>, ts: u32) -> u64 {
    const MINUTE: u32 = 48_000 * 60;
    let Some(last) = *last_ts else {
        *last_ts = Some(ts);
        return *publish_time;
    };
    let (ahead, behind) = (ts.wrapping_sub(last), last.wrapping_sub(ts));
    if behind > 0 && behind < MINUTE {
        return publish_time.saturating_sub(u64::from(behind));
    }
    *publish_time += if ahead < MINUTE { u64::from(ahead) } else { 960 };
    *last_ts = Some(ts);
    *publish_time
}

/// One packet from the SIP side.
fn receive(bridge: &Arc<Inner>, spec: &CallSpec, m: &mut Media, inbound: Inbound) {
    let now = Instant::now();
    let clear = match inbound {
        Inbound::Rtp(clear) => clear,
        Inbound::Rtcp(report) => {
            let blocks = m.rtcp.far_end.blocks;
            match m.rtcp.on_rtcp(now, std::time::SystemTime::now(), &report) {
                // Its audio's source said BYE: the next source's packets take over at once.
                Ok(byes) if byes.iter().any(|s| m.source.current() == Some(*s)) => m.source.reset(),
                Ok(_) => {}
                Err(e) => debug!(call = %spec.id, error = %e, "RTCP from the SIP party refused"),
            }
            if m.rtcp.far_end.blocks != blocks {
                // Its view of our stream: Opus spends FEC on the loss it reports.
                m.codec.follow_loss(m.rtcp.far_end.fraction_lost);
            }
            return;
        }
        Inbound::Dtls(_) => return,
    };
    let Ok(p) = RtpPacket::parse(&clear) else { return };
    m.first_rtp.get_or_insert(now);
    m.last_rtp = Some(now);
    let pt = p.payload_type().0;
    let event = m.agreement.is_telephone_event(pt);
    // The audio comes from one source at a time (`SourceLock`: another SSRC takes over after three
    // packets in sequence, or once the current one is quiet, re-offered or gone with an RTCP BYE).
    if !event && !m.source.accept(now, p.ssrc().0, p.seq()) {
        debug!(call = %spec.id, ssrc = p.ssrc().0, "a packet from another source while the audio's goes on: ignored");
        return;
    }
    // In the RTP clock our reports count in (a G.722 far end stamping at 16 kHz, halved).
    if !m.rtcp.on_received(now, p.ssrc().0, p.seq(), p.timestamp() / m.g722_clock.scale(), !event) {
        debug!(call = %spec.id, seq = p.seq(), "a sequence number far from the stream's: dropped (taken once the next follows it)");
        return;
    }
    if event {
        // Telephone-events are reported as digits and never mixed as audio.
        if let Some(receiver) = m.dtmf_in.as_mut() {
            if let Err(e) = receiver.handle_packet(now, p.seq(), p.timestamp(), p.marker(), p.payload()) {
                debug!(call = %spec.id, error = %e, "telephone-event refused");
            }
        }
        report_digits(bridge, spec, m, now);
        return;
    }
    if pt == m.agreement.payload_type || m.agreement.received_codec(pt) == Some(m.agreement.codec) {
        if m.agreement.codec == sdp_negotiation::Codec::Opus {
            // Opus from the SIP side enters the session as it is, when it arrives: the router
            // forwards it to subscribers, whose own jitter buffers play it out; no playout clock
            // here. A muted call's packets are simply not sent (subscribers conceal, as after DTX).
            let muted = spec.sip.observe_force_mute
                && bridge.service.stream(&spec.session, &spec.stream).is_some_and(|s| s.audio_muted);
            let rtp_time = opus_publish_time(&mut m.publish_time, &mut m.last_opus_ts, p.timestamp());
            if !muted {
                let frame = MediaFrame {
                    codec: FrameCodec::Opus,
                    rtp_time,
                    data: p.payload().to_vec().into(),
                    contiguous: true,
                    // Forwarded undecoded: its level is not known here.
                    audio_level: None,
                    arrival: std::time::Instant::now(),
                };
                let _ = bridge.service.write_frame(&spec.stream, frame);
            }
        } else {
            // Any packet time the far end chose (10, 20, 30 ms or more), by its payload's length.
            let Some(duration) = m.codec.payload_duration(p.payload()) else {
                debug!(call = %spec.id, bytes = p.payload().len(), "an audio packet with no audio: dropped");
                return;
            };
            if m.agreement.codec == sdp_negotiation::Codec::G722
                && m.g722_clock.observe(p.ssrc().0, p.seq(), p.timestamp(), duration)
            {
                let khz = 8 * m.g722_clock.scale();
                info!(call = %spec.id, khz, "the SIP party's G.722 timestamps are read at {khz} kHz from now (RFC 3551: 8)");
                m.jitter.clear();
            }
            let time = m.rtp_in.extend(p.timestamp()) / u64::from(m.g722_clock.scale());
            let arrival = m.jitter.push(now, time, duration, p.payload().to_vec());
            if arrival != media_mixer::jitter::Arrival::Queued {
                debug!(call = %spec.id, ?arrival, "a packet from the SIP party");
            }
        }
    }
}

/// The far end's `b=` for its audio as a media bitrate: a `b=AS` counts each 20 ms packet's IP,
/// UDP and RTP headers (and the SRTP tag).
fn audio_bandwidth(audio: &MediaAgreement) -> Option<u64> {
    let header_bytes = 40 + if audio.sdes.is_some() || audio.dtls.is_some() { 10 } else { 0 };
    audio.remote_bandwidth.map(|b| b.media_bitrate(50, header_bytes))
}

/// RFC 4733 both ways, when telephone-event was agreed (in its clock).
fn dtmf_for(audio: &MediaAgreement) -> (Option<dtmf_rfc4733::Sender>, Option<dtmf_rfc4733::Receiver>) {
    match audio.telephone_event.and_then(|(_, rate)| dtmf_rfc4733::ClockRate::new(rate).ok()) {
        Some(clock_rate) => {
            let sender =
                dtmf_rfc4733::Sender::new(dtmf_rfc4733::SenderConfig { clock_rate, ..Default::default() }).ok();
            let receiver =
                dtmf_rfc4733::Receiver::new(dtmf_rfc4733::ReceiverConfig { clock_rate, ..Default::default() });
            (sender, Some(receiver))
        }
        None => (None, None),
    }
}

/// The codec of an agreement, set up for the far end's parameters.
fn audio_codec(audio: &MediaAgreement) -> Result<AudioCodec, String> {
    AudioCodec::for_far_end(audio.codec, audio.fmtp.as_deref(), audio_bandwidth(audio))
        .ok_or_else(|| format!("{:?} is not an audio codec we carry", audio.codec))
}

/// Asks the session's mixer for the call's audio in `codec`'s rate: the frames' receiver.
fn listen(
    bridge: &Arc<Inner>,
    spec: &CallSpec,
    audio: &MediaAgreement,
    codec: &AudioCodec,
) -> Result<mpsc::Receiver<ListenerFrame>, String> {
    // Room for a tick of 2.5 ms packets forwarded as they are (eight), and a few ticks' delay.
    let (tx, mix) = mpsc::channel(64);
    mixer(bridge, spec)
        .ok_or_else(|| "the session's mixer is gone".to_owned())?
        .commands
        .send(AudioCommand::Listen {
            call: spec.number,
            own: spec.stream.clone(),
            subset: spec.sip.streams.clone(),
            // A publisher's Opus is forwarded as it is only to a far end that takes it as it is
            // (its a=fmtp asks nothing a browser's Opus does not already give).
            passthrough: audio.codec == sdp_negotiation::Codec::Opus
                && !crate::codec::opus_constrained(audio.fmtp.as_deref(), audio_bandwidth(audio)),
            rate: codec.sample_rate(),
            frames: tx,
        })
        .map_err(|_| "the session's mixer is gone".to_owned())?;
    Ok(mix)
}

/// The call's tick: the playout clock every 20 ms for transcoded codecs; for Opus (forwarded as it
/// arrives, no playout clock) it only checks timeouts and DTMF, ten times a second. Burst: the
/// playout clock keeps real time on average (see the session mixer).
fn tick_for(codec: sdp_negotiation::Codec) -> tokio::time::Interval {
    let period = if codec == sdp_negotiation::Codec::Opus { 100 } else { 20 };
    let mut tick = tokio::time::interval(Duration::from_millis(period));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    tick
}

/// Most media host names one call remembers (see [`resolve_hosts`]).
const MAX_MEDIA_NAMES: usize = 8;
/// Once that many are known, how long a call waits between two lookups of new names.
const MEDIA_NAME_EVERY: Duration = Duration::from_secs(60);

/// The media host names a call has looked up (see [`resolve_hosts`]).
#[derive(Debug, Default)]
struct MediaNames {
    /// Each name (lower case, without a final dot) and what it gave.
    known: Vec<(String, Option<std::net::IpAddr>)>,
    /// When the last lookup was made.
    looked_up: Option<Instant>,
}

/// RFC 4566 lets `c=` name a host: its media addresses are looked up here (within 1 s; an IPv4
/// address preferred when the name has both), since the negotiation never does IO. The call's
/// `names` remember what each name gave (or that it gave nothing), so a far end that repeats a
/// slow name in every re-offer holds the call's media loop up once, not each time. Past
/// [`MAX_MEDIA_NAMES`] names, a new one is looked up (in place of the oldest) only
/// [`MEDIA_NAME_EVERY`] after the last lookup: a far end cycling through names costs a lookup,
/// and a blocking thread, a minute at most. A name that cannot be resolved (or waits its turn)
/// leaves the stream without an address (logged): nothing is sent to it.
async fn resolve_hosts(call: &str, names: &mut MediaNames, a: &mut Agreement) {
    for m in [a.audio.as_mut(), a.video.as_mut()].into_iter().flatten() {
        let host = m.remote_host.trim().trim_end_matches('.').to_ascii_lowercase();
        if m.remote_rtp.is_some() || host.is_empty() || host.parse::<std::net::IpAddr>().is_ok() {
            continue;
        }
        let now = Instant::now();
        let full = names.known.len() >= MAX_MEDIA_NAMES;
        let ip = match names.known.iter().find(|(n, _)| *n == host) {
            Some((_, ip)) => *ip,
            None if full && names.looked_up.is_some_and(|t| now.saturating_duration_since(t) < MEDIA_NAME_EVERY) => {
                warn!(call, host, "a media host name beyond the {MAX_MEDIA_NAMES} this call knows, within a minute of the last: not looked up");
                None
            }
            None => {
                names.looked_up = Some(now);
                let lookup = tokio::net::lookup_host((host.clone(), m.remote_port));
                let ip = match tokio::time::timeout(Duration::from_secs(1), lookup).await {
                    Ok(Ok(found)) => {
                        let all: Vec<std::net::SocketAddr> = found.collect();
                        all.iter().find(|a| a.is_ipv4()).or(all.first()).map(std::net::SocketAddr::ip)
                    }
                    Ok(Err(_)) | Err(_) => None,
                };
                if full {
                    names.known.remove(0);
                }
                names.known.push((host.clone(), ip));
                ip
            }
        };
        match ip {
            Some(ip) => {
                let address = std::net::SocketAddr::new(ip, m.remote_port);
                debug!(call, host, %address, "media address looked up");
                m.remote_rtp = Some(address);
                if m.remote_rtcp.is_none() {
                    m.remote_rtcp = m.remote_rtcp_port.map(|port| std::net::SocketAddr::new(ip, port));
                }
            }
            None => warn!(call, host, "the media host name in c= cannot be resolved: nothing is sent to it"),
        }
    }
}

/// Whether an early answer (a 183's) can start the audio leg before the 2xx: plain RTP or SDES
/// with keys that parse, a codec we carry, and an address to take media from. Not DTLS-SRTP: its
/// handshake (and a failure of it) would belong to an unanswered call, and many SBCs only do it
/// once they answer.
fn early_usable(a: &Agreement) -> Result<(), String> {
    let audio = a.audio.as_ref().ok_or("no audio")?;
    if audio.dtls.is_some() {
        return Err("DTLS-SRTP waits for the answer".into());
    }
    if audio.remote_rtp.is_none() {
        return Err("no address".into());
    }
    audio_codec(audio)?;
    srtp_contexts(audio)?;
    Ok(())
}

/// RFC 8842 §5.2: a re-offer whose DTLS fingerprint (another certificate: the far end's media
/// moved, to another media server after a transfer) or setup role differs from the running
/// association's asks for a new one. Its handshake is started here; `None` when the association
/// stays (or one cannot be started: logged, the old keys stay).
pub(crate) fn new_association(
    identity: Option<&srtp_transport::dtls::DtlsIdentity>,
    old: &MediaAgreement,
    new: &MediaAgreement,
) -> Option<DtlsState> {
    let (Some(was), Some(now)) = (&old.dtls, &new.dtls) else { return None };
    if was.remote_fingerprint == now.remote_fingerprint && was.local_setup == now.local_setup {
        return None;
    }
    match start_dtls(identity, new) {
        Ok(state) => state,
        Err(why) => {
            warn!(%why, "the re-offer's new DTLS association cannot be started: the old keys stay");
            None
        }
    }
}

/// New RFC 4733 sender and receiver for `audio` (a new RTP stream, or another telephone-event
/// clock): the digits that had not started go on in the new sender (`play-dtmf` answered 200 for
/// them), or in SIP INFO when `audio` has no telephone-event.
fn renew_dtmf(spec: &CallSpec, m: &mut Media, audio: &MediaAgreement) {
    let waiting = match m.dtmf_out.as_mut() {
        Some(sender) => sender.take_queued(),
        None => m.dtmf_info.take_queued(),
    };
    let (out, receiver) = dtmf_for(audio);
    m.dtmf_out = out;
    // The receiver is kept while the clock stays (the end packets of a digit still arriving are
    // that digit's, not a new press).
    let clock = |a: &MediaAgreement| a.telephone_event.map(|(_, clock)| clock);
    if clock(audio) != clock(&m.agreement) || m.dtmf_in.is_none() {
        m.dtmf_in = receiver;
    }
    if waiting.is_empty() {
        return;
    }
    // The digits go on as RFC 4733 events, or in SIP INFO when the re-offer drops telephone-event.
    let queued = match m.dtmf_out.as_mut() {
        Some(sender) => sender.enqueue(&waiting),
        None => m.dtmf_info.enqueue(Instant::now(), &waiting),
    };
    if let Err(e) = queued {
        warn!(call = %spec.id, error = %e, "DTMF lost to the change of stream");
    }
}

/// Tells the REST API whether the call takes DTMF now (answered; telephone-event agreed, or SIP
/// INFO not refused; media going to the far end) and how many digits wait in its sender.
fn dtmf_ready(spec: &CallSpec, m: &Media) {
    if let Ok(mut d) = spec.dtmf.lock() {
        // Early media (a later 183) is no answer: play-dtmf says "not answered yet" then.
        d.answered = !m.early;
        d.telephone_event = m.dtmf_out.is_some();
        d.by_info = m.dtmf_out.is_none() && !m.dtmf_info.is_refused();
        d.sending = media_sending(m);
        d.queued = m.dtmf_out.as_ref().map_or_else(|| m.dtmf_info.queued(), dtmf_rfc4733::Sender::queued);
    }
}

/// Whether our media goes to the far end: answered, not held (our recvonly or inactive, RFC 3264
/// §6.1: nothing is sent), the stream not removed.
fn media_sending(m: &Media) -> bool {
    !m.early && !m.removed && matches!(m.agreement.local_direction, Direction::SendRecv | Direction::SendOnly)
}

/// A new agreement (our answer to the far end's re-offer, or its answer to ours): the video task
/// told; the audio's address, hold, source, codec, packet time and telephone-event followed. The
/// agreement is adopted only once followed: a codec that cannot be set up leaves the old one.
fn follow_agreement(
    bridge: &Arc<Inner>,
    spec: &CallSpec,
    media: Option<&mut Media>,
    video: Option<&VideoHandle>,
    agreement: sdp_negotiation::Agreement,
    tick: &mut tokio::time::Interval,
) {
    match (video, agreement.video.as_ref()) {
        (Some(v), Some(agreed)) => {
            let _ = v.control.send(VideoControl::Remote(Box::new(agreed.clone())));
        }
        // The video m-line is gone from the agreement: rejected (port 0) by the far end.
        (Some(v), None) => {
            let _ = v.control.send(VideoControl::Removed);
        }
        _ => {}
    }
    let Some(m) = media else { return };
    follow_audio(bridge, spec, m, agreement.audio, tick);
    if !media_sending(m) {
        // Held, or the stream removed: digits not started would go nowhere (and `play-dtmf`
        // refuses more until the call takes media again).
        let dropped = match m.dtmf_out.as_mut() {
            Some(sender) => sender.take_queued(),
            None => m.dtmf_info.take_queued(),
        };
        if !dropped.is_empty() {
            warn!(call = %spec.id, digits = dropped.len(), "DTMF not played: the far end no longer takes our media");
        }
    }
    dtmf_ready(spec, m);
}

/// The audio part of [`follow_agreement`] (`None`: the far end removed the audio stream).
fn follow_audio(
    bridge: &Arc<Inner>,
    spec: &CallSpec,
    m: &mut Media,
    audio: Option<MediaAgreement>,
    tick: &mut tokio::time::Interval,
) {
    let Some(audio) = audio else {
        remove_audio(spec, m);
        return;
    };
    if m.removed {
        m.removed = false;
        info!(call = %spec.id, "the re-offer brings the audio stream back");
        let now = Instant::now();
        m.answered = now;
        m.last_rtp = m.last_rtp.map(|_| now);
    }
    match follow_keys(&m.leg, &m.agreement, &audio) {
        Ok(true) => {
            info!(call = %spec.id, suite = ?audio.sdes.as_ref().map(|s| &s.suite), "the re-offer re-keys the audio's SRTP")
        }
        Ok(false) => {}
        Err(why) => warn!(call = %spec.id, %why, "the re-offer's SRTP keys cannot be used: the old ones stay"),
    }
    if let Some(dtls) = new_association(bridge.dtls_identity.as_ref(), &m.agreement, &audio) {
        info!(call = %spec.id, "the re-offer asks for a new DTLS association: no audio until it is keyed");
        m.dtls = Some(dtls);
    }
    let hold = audio.remote_hold;
    let _ = m.leg.set_remote(audio.remote_rtp, audio.remote_rtcp);
    // The media timeouts count from a resume, or from when the far end starts sending: time on
    // hold or receiving only is never inactivity.
    let resumed = m.on_hold && !hold;
    if resumed || (!expects_rtp(&m.agreement) && expects_rtp(&audio)) {
        let now = Instant::now();
        m.answered = now;
        m.last_rtp = m.last_rtp.map(|_| now);
    }
    if hold != m.on_hold {
        m.on_hold = hold;
        // Before the answer (a later 183's direction) the call is still ringing: the state at
        // the answer is reported then.
        if !m.early {
            let state = if hold { "ON_HOLD" } else { "ACTIVE" };
            bridge.report(spec, "callUpdated", json!({"state": state}));
        }
    }
    // A re-offer may bring another source (a transfer, a new media server): the next packet's is
    // the audio's.
    m.source.reset();
    let changed = audio.codec != m.agreement.codec
        || audio.fmtp != m.agreement.fmtp
        || audio.remote_bandwidth != m.agreement.remote_bandwidth;
    if changed {
        if let Err(why) = change_codec(bridge, spec, m, &audio) {
            warn!(call = %spec.id, %why, "the re-offer's codec cannot be followed");
            // The rest of the re-offer (keys, direction, address) holds all the same; the codec
            // and what goes with it stay as they were.
            let old = &m.agreement;
            m.agreement = MediaAgreement {
                codec: old.codec,
                payload_type: old.payload_type,
                fmtp: old.fmtp.clone(),
                remote_bandwidth: old.remote_bandwidth,
                telephone_event: old.telephone_event,
                ..audio
            };
            return;
        }
        *tick = tick_for(audio.codec);
    } else if audio.ptime != m.agreement.ptime {
        // The mix not sent yet is dropped: its time passes all the same.
        m.timestamp = m.timestamp.wrapping_add(m.codec.discard_pending());
        let ptime = m.codec.set_packet_time(audio.ptime);
        debug!(call = %spec.id, ptime, "the SIP party's packet time changed");
    }
    // telephone-event that appears, goes or changes clock; another payload type alone changes
    // nothing here (it is read at each send, and the receiver never looks at it), so digits queued
    // or playing are not lost to a renumbering.
    let clock = |a: &MediaAgreement| a.telephone_event.map(|(_, clock)| clock);
    if clock(&audio) != clock(&m.agreement) {
        renew_dtmf(spec, m, &audio);
        info!(call = %spec.id, telephone_event = ?audio.telephone_event, "the re-offer changes telephone-event");
    }
    m.agreement = audio;
}

/// The session's mixer for this call: joined (and counted) on the call's first listen; the one it
/// joined afterwards.
fn mixer(bridge: &Arc<Inner>, spec: &CallSpec) -> Option<crate::audio::SessionAudio> {
    if spec.listening.swap(true, std::sync::atomic::Ordering::AcqRel) {
        bridge.audio_for_existing(&spec.session)
    } else {
        Some(bridge.audio_for(&spec.session))
    }
}

/// A re-offer changed the audio codec or what the far end asks of it (a transfer to another
/// media server, an SBC re-anchoring the call): the codec set up anew, the mixer told the call's
/// new rate, and a new RTP stream for it (new SSRC and clock, after a BYE for the old one; the
/// far end's packets start a new timeline too).
fn change_codec(bridge: &Arc<Inner>, spec: &CallSpec, m: &mut Media, audio: &MediaAgreement) -> Result<(), String> {
    let mut codec = audio_codec(audio)?;
    let ptime = codec.set_packet_time(audio.ptime);
    // Listening again replaces the call's listener in place (its announcement kept, the mix's
    // rate changed at most once); no Leave first.
    m.mix = listen(bridge, spec, audio, &codec)?;
    let now = Instant::now();
    if may_send_rtcp(m) {
        let _ = m.leg.send_rtcp(m.rtcp.bye(now, std::time::SystemTime::now()));
    }
    m.ssrc = rand::random();
    m.seq = rand::random();
    m.timestamp = rand::random();
    m.talkspurt = true;
    // The stream starts over: a tone in progress cannot go on in it (its start time is of the
    // old one); the digits not started go on in a sender of the new one.
    renew_dtmf(spec, m, audio);
    let cname = m.rtcp.cname().to_vec();
    m.rtcp = crate::rtcp::Rtcp::with_cname(m.ssrc, codec.rtp_clock(), bridge.config.rtcp_interval, now, cname);
    m.jitter = JitterBuffer::new(JitterConfig { clock_rate: codec.rtp_clock(), ..JitterConfig::default() });
    m.rtp_in = TimestampExtender::new();
    m.g722_clock = G722Clock::default();
    m.decoded.clear();
    m.last_opus_ts = None;
    info!(call = %spec.id, from = ?m.agreement.codec, to = ?audio.codec, ptime, "the re-offer changes the audio codec");
    m.codec = codec;
    Ok(())
}

/// How many key presses a call reports to its session: [`DigitBudget::RATE`] a second, in bursts
/// of up to [`DigitBudget::BURST`]. A keypad (or an RFC 4733 sender at its shortest tones and
/// gaps, 12.5 a second) stays well inside; a flood of INFOs or events from a hostile or broken far
/// end would otherwise become `dtmf` signals to every participant and fill their queues.
#[derive(Debug)]
pub(crate) struct DigitBudget {
    tokens: f64,
    at: Option<Instant>,
    /// Presses dropped since the last warning.
    dropped: u64,
}

impl Default for DigitBudget {
    fn default() -> Self {
        DigitBudget { tokens: Self::BURST, at: None, dropped: 0 }
    }
}

impl DigitBudget {
    /// Presses a second, on average.
    pub(crate) const RATE: f64 = 15.0;
    /// Presses at once.
    pub(crate) const BURST: f64 = 30.0;

    /// Whether a press at `now` may be reported; `Some(n)` in the second member when it is the
    /// first press let through after `n` were dropped, `Some(0)` for the first one dropped (for
    /// the log).
    fn take(&mut self, now: Instant) -> (bool, Option<u64>) {
        if let Some(at) = self.at {
            let refill = now.saturating_duration_since(at).as_secs_f64() * Self::RATE;
            self.tokens = (self.tokens + refill).min(Self::BURST);
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            let dropped = std::mem::take(&mut self.dropped);
            return (true, (dropped > 0).then_some(dropped));
        }
        self.dropped += 1;
        (false, (self.dropped == 1).then_some(0))
    }
}

/// Key presses of a party that may send each one twice, as RFC 4733 events and in a SIP INFO
/// (phones set to "RFC 2833 + INFO"): the INFO comes at key-down, the RFC 4733 digit at key-up.
/// An INFO digit is held [`INFO_HOLD`] when telephone-event was agreed; an RFC 4733 digit of the
/// same key meanwhile is the same press (the INFO is dropped); so is an INFO within a second after
/// the same key as RFC 4733, and an RFC 4733 digit whose press began up to half a second before
/// the same key was reported from an INFO (a long press).
#[derive(Debug, Default)]
struct DtmfPresses {
    /// INFO digits waiting, and when they came.
    held: std::collections::VecDeque<(dtmf_rfc4733::Digit, Instant)>,
    /// Digits reported lately: the key, when, and whether from an INFO.
    reported: std::collections::VecDeque<(dtmf_rfc4733::Digit, Instant, bool)>,
}

/// How long a SIP INFO digit waits for the same press as RFC 4733.
const INFO_HOLD: Duration = Duration::from_millis(400);

impl DtmfPresses {
    fn remember(&mut self, digit: dtmf_rfc4733::Digit, at: Instant, by_info: bool) {
        self.reported.retain(|(_, t, _)| at.saturating_duration_since(*t) < Duration::from_secs(10));
        if self.reported.len() == 32 {
            self.reported.pop_front();
        }
        self.reported.push_back((digit, at, by_info));
    }

    /// Whether an RFC 4733 digit that lasted `held_down` and ended at `now` is new.
    fn rtp_digit(&mut self, now: Instant, digit: dtmf_rfc4733::Digit, held_down: Duration) -> bool {
        if let Some(i) = self.held.iter().position(|(d, _)| *d == digit) {
            self.held.remove(i);
        } else {
            let pressed = now.checked_sub(held_down + Duration::from_millis(500)).unwrap_or(now);
            if let Some(i) = self.reported.iter().position(|(d, t, info)| *info && *d == digit && *t >= pressed) {
                // Reported from its INFO already; that record is used up.
                self.reported.remove(i);
                return false;
            }
        }
        self.remember(digit, now, false);
        true
    }

    /// An INFO digit at `now`: held, or dropped as the same press as an RFC 4733 digit just
    /// reported.
    fn info_digit(&mut self, now: Instant, digit: dtmf_rfc4733::Digit) {
        let just = self.reported.iter().position(|(d, t, info)| {
            !*info && *d == digit && now.saturating_duration_since(*t) < Duration::from_secs(1)
        });
        match just {
            Some(i) => {
                self.reported.remove(i);
            }
            None if self.held.len() < 32 => self.held.push_back((digit, now)),
            None => {}
        }
    }

    /// The held INFO digits whose wait is over, in order.
    fn due(&mut self, now: Instant) -> Vec<dtmf_rfc4733::Digit> {
        let mut out = Vec::new();
        while let Some(&(digit, at)) = self.held.front() {
            if now.saturating_duration_since(at) < INFO_HOLD {
                break;
            }
            self.held.pop_front();
            self.remember(digit, now, true);
            out.push(digit);
        }
        out
    }
}

/// The digits the SIP party pressed: RFC 4733 events, and SIP INFO digits whose wait is over.
fn report_digits(bridge: &Arc<Inner>, spec: &CallSpec, m: &mut Media, now: Instant) {
    if let Some(receiver) = m.dtmf_in.as_mut() {
        while let Some(ev) = receiver.poll_event() {
            if m.presses.rtp_digit(now, ev.digit, ev.duration) {
                let star_six = (!m.early).then_some(&mut m.star_six);
                report_digit(bridge, spec, star_six, ev.digit, now, "RFC 4733");
            } else {
                debug!(call = %spec.id, "an RFC 4733 digit repeating a SIP INFO: not counted again");
            }
        }
    }
    for digit in m.presses.due(now) {
        report_digit(bridge, spec, Some(&mut m.star_six), digit, now, "SIP INFO");
    }
}

/// A digit in a SIP INFO (`application/dtmf-relay` or `application/dtmf`), from a party that
/// signals keys that way: reported at once when no telephone-event was agreed, else after
/// [`INFO_HOLD`] unless the same press comes as RFC 4733 (see [`DtmfPresses`]).
fn report_info_digit(bridge: &Arc<Inner>, spec: &CallSpec, media: Option<&mut Media>, content_type: &str, body: &[u8]) {
    let Some(digit) = dtmf_rfc4733::parse_sip_info(content_type, body) else {
        debug!(call = %spec.id, content_type, "an INFO without a key");
        return;
    };
    match media {
        Some(m) if m.dtmf_in.is_some() => m.presses.info_digit(Instant::now(), digit),
        Some(m) => report_digit(bridge, spec, Some(&mut m.star_six), digit, Instant::now(), "SIP INFO"),
        // Before the answer: the digit, but no `*6` (the toggle is the answered call's).
        None => report_digit(bridge, spec, None, digit, Instant::now(), "SIP INFO"),
    }
}

/// A digit the SIP party pressed: a `dtmf` signal to the session from the SIP connection, and the
/// `*6` mute toggle for calls dialled with `observeForceMute`.
fn report_digit(
    bridge: &Arc<Inner>,
    spec: &CallSpec,
    star_six: Option<&mut dtmf_rfc4733::SequenceDetector>,
    pressed: dtmf_rfc4733::Digit,
    now: Instant,
    how: &'static str,
) {
    let (allowed, dropped) = spec.digits.lock().map(|mut b| b.take(now)).unwrap_or((true, None));
    match dropped {
        Some(0) => warn!(call = %spec.id, "DTMF from the SIP party comes faster than any keypad: presses dropped"),
        Some(n) => warn!(call = %spec.id, dropped = n, "DTMF from the SIP party slowed down: presses go through again"),
        None => {}
    }
    if !allowed {
        return;
    }
    let digit = pressed.to_char().to_string();
    // The key itself only at debug level: digits can be PINs.
    info!(call = %spec.id, how, "DTMF from the SIP party");
    debug!(call = %spec.id, %digit, "the key");
    let _ = bridge.service.signal_from(&spec.session, &spec.connection.id, None, "dtmf", &digit);
    if star_six.is_some_and(|s| s.handle_digit(now, pressed)) && spec.sip.observe_force_mute {
        let muted = bridge.service.stream(&spec.session, &spec.stream).is_some_and(|s| s.audio_muted);
        let result = if muted {
            bridge.service.unmute_stream(&spec.stream)
        } else {
            // The SIP party's own mute: no `muteForced`, no "you have been muted" on top of "you
            // are muted" (and a moderator's mute at the same moment is still one).
            bridge.service.mute_own_stream(&spec.stream)
        };
        info!(call = %spec.id, now_muted = !muted, ok = result.is_ok(), "*6 toggled the mute");
        let prompt = if muted { media_mixer::Prompt::YouAreUnmuted } else { media_mixer::Prompt::YouAreMuted };
        announce(bridge, spec, prompt);
    }
}

/// Plays an announcement to this call only, mixed into what it hears.
fn announce(bridge: &Arc<Inner>, spec: &CallSpec, prompt: media_mixer::Prompt) {
    let _ = bridge
        .audio_for_existing(&spec.session)
        .map(|a| a.commands.send(AudioCommand::Play { call: spec.number, prompt }));
}

/// Every 20 ms: the SIP party's next 20 ms, decoded from as many of its packets as cover it (or
/// concealed where they were lost) and published into the session as Opus. The session's clock for
/// the stream advances every tick, published or not, so that a pause is seen as one downstream.
fn play_inbound(bridge: &Arc<Inner>, spec: &CallSpec, m: &mut Media) {
    let now = Instant::now();
    if let Some(receiver) = m.dtmf_in.as_mut() {
        receiver.handle_timeout(now);
    }
    report_digits(bridge, spec, m, now);
    if m.agreement.codec == sdp_negotiation::Codec::Opus {
        // Forwarded as it arrives (see `receive`).
        return;
    }
    const FRAME: usize = crate::codec::FRAME_48K;
    let codec = &m.codec;
    m.jitter.start_tick_with(now, |payload| codec.is_quiet(payload));
    let clock = u64::from(m.codec.rtp_clock());
    let mut pcm = Vec::with_capacity(FRAME);
    while m.decoded.len() < FRAME {
        match m.jitter.pop() {
            Next::Packet { item, skip, .. } => {
                // Its start, made up already, is not played again.
                m.codec.decode(&item, (u64::from(skip) * 48_000 / clock) as usize, &mut pcm);
            }
            Next::Lost { duration } => m.codec.conceal((u64::from(duration) * 48_000 / clock) as usize, &mut pcm),
            Next::Empty => break,
        }
        m.decoded.extend_from_slice(&pcm);
    }
    let time = m.publish_time;
    m.publish_time += FRAME as u64;
    if m.decoded.is_empty() {
        // Not playing yet, buffering again, or the far end paused: nothing this tick.
        return;
    }
    if m.decoded.len() < FRAME {
        // Part of the tick came, the rest is late: made up, so the session gets no hole (and the
        // part that came does not wait a tick); the late rest is owed, skipped when it comes.
        let missing = FRAME - m.decoded.len();
        m.codec.conceal(missing, &mut pcm);
        m.decoded.extend_from_slice(&pcm);
        m.decoded.resize(FRAME.max(m.decoded.len()), 0);
        m.jitter.made_up((missing as u64 * clock / 48_000) as u32);
    }
    let mut pcm: Vec<i16> = m.decoded.drain(..FRAME).collect();
    let muted = spec.sip.observe_force_mute
        && bridge.service.stream(&spec.session, &spec.stream).is_some_and(|s| s.audio_muted);
    if muted {
        pcm.iter_mut().for_each(|s| *s = 0);
    }
    let mut opus = Vec::with_capacity(160);
    if m.publish.encode(&pcm, &mut opus).is_ok() {
        // Its level, measured on the PCM at hand, lets the session's mixer skip decoding it while
        // the SIP party is quiet.
        let frame = MediaFrame {
            codec: FrameCodec::Opus,
            rtp_time: time,
            data: opus.into(),
            contiguous: true,
            audio_level: Some(media_mixer::level::level_dbov(&pcm)),
            arrival: now,
        };
        let _ = bridge.service.write_frame(&spec.stream, frame);
    }
}

/// The video codecs of an offer, from the configured ones: H.264 in packetization-mode 1 is
/// followed by H.264 in mode 0 (single NAL units), which older SIP video endpoints take alone.
fn offered_video_codecs(configured: &[sdp_negotiation::Codec]) -> Vec<sdp_negotiation::Codec> {
    let mut codecs = Vec::with_capacity(configured.len() + 1);
    for c in configured {
        if !codecs.contains(c) {
            codecs.push(*c);
        }
        if *c == sdp_negotiation::Codec::H264 && !configured.contains(&sdp_negotiation::Codec::H264SingleNal) {
            codecs.push(sdp_negotiation::Codec::H264SingleNal);
        }
    }
    codecs
}

/// Whether the far end sends us media under `a`: it declared `sendrecv` or `sendonly`, and we
/// receive. A `recvonly` far end (a voicemail system, a recorder) sends nothing by design (RFC
/// 3264 §5.1), so its silence is no media timeout.
fn expects_rtp(a: &MediaAgreement) -> bool {
    matches!(a.remote_direction, Direction::SendRecv | Direction::SendOnly)
        && matches!(a.local_direction, Direction::SendRecv | Direction::RecvOnly)
}

/// The configured media timeouts, checked every tick: `(code, message)` when one fired.
fn timed_out(bridge: &Arc<Inner>, m: &Media, started: Instant) -> Option<(u16, &'static str)> {
    let now = Instant::now();
    let c = &bridge.config;
    if now.duration_since(started) >= c.max_duration {
        return Some((705, "Max Duration"));
    }
    if m.on_hold || m.early || m.removed || !expects_rtp(&m.agreement) {
        return None;
    }
    match m.last_rtp {
        None if now.duration_since(m.answered) >= c.no_rtp_timeout => Some((704, "Media Timeout")),
        Some(last) if now.duration_since(last) >= c.inactivity_timeout => Some((706, "Max Inactive")),
        _ => None,
    }
}

/// What our INFO in flight carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InfoKind {
    /// An RFC 5168 keyframe request.
    Keyframe,
    /// A DTMF key (`application/dtmf-relay`).
    Dtmf,
}

/// Sends an RFC 5168 keyframe request INFO, when its pace allows.
async fn ask_keyframe_by_info(
    bridge: &Arc<Inner>,
    spec: &CallSpec,
    handle: sip_signaling::CallHandle,
    fast_updates: &mut FastUpdateInfos,
    info_in_flight: &mut Option<InfoKind>,
) {
    if !fast_updates.may_send(Instant::now()) {
        return;
    }
    let body = Bytes::from_static(crate::video::PICTURE_FAST_UPDATE);
    if bridge.sip.info(handle, crate::video::MEDIA_CONTROL, body).await.is_err() {
        fast_updates.not_sent();
    } else {
        *info_in_flight = Some(InfoKind::Keyframe);
        debug!(call = %spec.id, "keyframe asked of the SIP party by INFO");
    }
}

/// Sleeps until `at`, or for ever without one.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// A call's video task, stopped when dropped.
struct VideoHandle {
    control: mpsc::UnboundedSender<VideoControl>,
    /// What the task asks of the dialog; closed when the task ends.
    asks: mpsc::UnboundedReceiver<VideoAsk>,
}

/// Forgets a call's video whose task ended (its DTLS-SRTP handshake failed, its leg stopped):
/// its port is closed, so later offers and answers carry the video m-line rejected (port 0)
/// instead of accepting it on that port. True when it had ended.
fn video_ended(spec: &CallSpec, video: &mut Option<VideoHandle>, sdp: &mut LocalSession) -> bool {
    if !video.as_ref().is_some_and(|v| v.asks.is_closed()) {
        return false;
    }
    warn!(call = %spec.id, "the call's video has ended: offers and answers carry it rejected from now on");
    *video = None;
    sdp.stop_carrying("video");
    true
}

/// Starts the video of an answered call: its leg (SRTP by SDES or DTLS-SRTP), a place in the
/// session's video hub, and the task between the two. `None` (audio only) when it cannot.
fn start_video(
    bridge: &Arc<Inner>,
    spec: &CallSpec,
    agreed: MediaAgreement,
    sockets: MediaSockets,
    cname: Vec<u8>,
) -> Option<VideoHandle> {
    // Its own leg and, with DTLS-SRTP, its own handshake (SIP peers do not bundle).
    let (leg, inbound, dtls) = match open_leg(bridge, &agreed, sockets) {
        Ok(x) => x,
        Err(why) => {
            warn!(call = %spec.id, %why, "no video leg: audio only");
            return None;
        }
    };
    let size =
        crate::video::canvas_for(&bridge.config.video, agreed.codec, agreed.fmtp.as_deref(), agreed.recv_max_picture);
    let fps = crate::video::frame_rate_for(&bridge.config.video, agreed.codec, agreed.fmtp.as_deref(), size);
    let keyframe = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let bandwidth = agreed.remote_bandwidth.map(|b| b.video_bitrate());
    let rate = crate::video_rate::SendRate::new(bridge.config.video.bitrate, bandwidth, Instant::now());
    let bitrate = Arc::new(std::sync::atomic::AtomicU32::new(rate.target()));
    let (frames_tx, frames) = mpsc::channel(2);
    let hub = bridge.video_for(&spec.session);
    spec.watching.store(true, std::sync::atomic::Ordering::Release);
    let watch = crate::video::VideoCommand::Watch {
        call: spec.number,
        own: spec.stream.clone(),
        subset: spec.sip.streams.clone(),
        codec: agreed.codec,
        size,
        keyframe: keyframe.clone(),
        bitrate: bitrate.clone(),
        frames: frames_tx,
        fps,
    };
    if hub.commands.send(watch).is_err() {
        warn!(call = %spec.id, "the session's video hub is gone: audio only");
    }
    info!(
        call = %spec.id,
        codec = ?agreed.codec,
        width = size.0,
        height = size.1,
        bitrate = rate.target(),
        "video grid for the SIP party"
    );
    let (control, control_rx) = mpsc::unbounded_channel();
    let (asks_tx, asks) = mpsc::unbounded_channel();
    let keyframe_wanted = spec.keyframe_wanted.lock().ok().and_then(|mut w| w.take());
    tokio::spawn(crate::video::run_call_video(crate::video::CallVideo {
        service: bridge.service.clone(),
        stream: spec.stream.clone(),
        call: spec.id.clone(),
        agreement: agreed,
        leg,
        inbound,
        frames,
        keyframe,
        keyframe_wanted,
        quality: crate::VideoQuality { lowest_bitrate: rate.target(), ..Default::default() },
        rate,
        bitrate,
        reporter: bridge.reporter.clone(),
        hub: hub.commands.clone(),
        number: spec.number,
        project: spec.project.clone(),
        control: control_rx,
        asks: asks_tx,
        dtls,
        dtls_identity: bridge.dtls_identity.clone(),
        cname,
        rtcp_interval: bridge.config.rtcp_interval,
        config: bridge.config.video.clone(),
        size,
        fps,
        fir_seq: 0,
    }));
    Some(VideoHandle { control, asks })
}

/// Starts the DTLS-SRTP handshake an agreement asks for (`None` without DTLS): its records travel
/// through the returned state's channels; its keys arrive on `done`.
pub(crate) fn start_dtls(
    identity: Option<&srtp_transport::dtls::DtlsIdentity>,
    agreed: &MediaAgreement,
) -> Result<Option<DtlsState>, String> {
    let (agreed_dtls, identity) = match (&agreed.dtls, identity) {
        (Some(a), Some(i)) => (a, i),
        (Some(_), None) => return Err("DTLS-SRTP agreed but we have no certificate".into()),
        _ => return Ok(None),
    };
    let remote = agreed.remote_rtp.ok_or("DTLS-SRTP without a remote media address")?;
    let role = if agreed_dtls.local_setup == sdp_negotiation::Setup::Active {
        srtp_transport::dtls::DtlsRole::Client
    } else {
        srtp_transport::dtls::DtlsRole::Server
    };
    let (to_handshake, incoming) = mpsc::channel(64);
    let (outgoing, from_handshake) = mpsc::unbounded_channel();
    let (done_tx, done) = tokio::sync::oneshot::channel();
    let (identity, fingerprint) = (identity.clone(), agreed_dtls.remote_fingerprint.clone());
    tokio::spawn(async move {
        let suites =
            [Suite::AesCm128HmacSha1_80, Suite::AeadAes128Gcm, Suite::AeadAes256Gcm, Suite::AesCm128HmacSha1_32];
        let params = srtp_transport::dtls::DtlsParams {
            role,
            remote_fingerprint: &fingerprint,
            suites: &suites,
            remote,
            timeout: Duration::from_secs(10),
        };
        let result = srtp_transport::dtls::handshake(&identity, params, incoming, outgoing).await;
        let _ = done_tx.send(result.map_err(|e| e.to_string()));
    });
    Ok(Some(DtlsState { to_handshake, from_handshake, done, ready: false, _session: None, records_open: true }))
}

impl DtlsState {
    /// Puts a finished handshake's keys in place on `leg` (media flows from now on) and keeps the
    /// association, which answers the peer's retransmissions.
    pub(crate) fn keyed(
        &mut self,
        leg: &LegHandle,
        keys: &srtp_transport::dtls::DtlsKeys,
        association: srtp_transport::dtls::DtlsSession,
    ) -> Result<(), String> {
        let inbound = Context::new(keys.suite, &keys.remote, Options::default()).map_err(|e| e.to_string())?;
        let outbound = Context::new(keys.suite, &keys.local, Options::default()).map_err(|e| e.to_string())?;
        let _ = leg.set_srtp(inbound, outbound);
        self.ready = true;
        self._session = Some(association);
        Ok(())
    }
}

/// The media leg an agreement describes, on `sockets`: SRTP by SDES when agreed; with DTLS-SRTP,
/// a leg that sends and takes nothing in clear until the handshake started here has keyed it.
fn open_leg(
    bridge: &Arc<Inner>,
    agreed: &MediaAgreement,
    sockets: MediaSockets,
) -> Result<(LegHandle, mpsc::Receiver<Inbound>, Option<DtlsState>), String> {
    let mut leg = MediaLeg::new(
        LegConfig { symmetric_rtp: true, rtcp_mux: agreed.rtcp_mux },
        agreed.remote_rtp,
        agreed.remote_rtcp,
    );
    if let Some((inbound, outbound)) = srtp_contexts(agreed)? {
        leg.set_srtp(inbound, outbound);
    }
    if agreed.dtls.is_some() {
        leg.await_srtp_keys();
    }
    let (leg, inbound) = srtp_transport::driver::spawn(leg, sockets).map_err(|e| e.to_string())?;
    let dtls = start_dtls(bridge.dtls_identity.as_ref(), agreed)?;
    Ok((leg, inbound, dtls))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A far end's answer naming `host` in `c=`, as the negotiation reads it.
    fn agreement_naming(host: &str) -> Agreement {
        let mut local = LocalSession::new(sdp_negotiation::OfferOptions::default(), 1);
        local.create_offer();
        let answer =
            format!("v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n");
        local.process_answer(answer.as_bytes()).expect("an answer")
    }

    /// Media host names are looked up and remembered (whatever their case, with or without a
    /// final dot); past eight names, a new one is looked up only a minute after the last lookup.
    #[tokio::test]
    async fn media_host_names_are_remembered_and_new_ones_looked_up_a_minute_apart() {
        let resolved = |a: &Agreement| a.audio.as_ref().and_then(|m| m.remote_rtp);
        let mut names = MediaNames::default();
        let mut a = agreement_naming("localhost");
        resolve_hosts("call", &mut names, &mut a).await;
        assert!(resolved(&a).is_some_and(|r| r.ip().is_loopback() && r.port() == 4000), "localhost is looked up");
        for n in 1..8 {
            names.known.push((format!("name{n}.invalid"), None));
        }
        let mut again = agreement_naming("LocalHost.");
        resolve_hosts("call", &mut names, &mut again).await;
        assert!(resolved(&again).is_some(), "a name known is used again, whatever its case");

        // Full: a new name waits a minute after the last lookup.
        names.known.remove(0);
        names.known.push(("name8.invalid".into(), None));
        let mut soon = agreement_naming("localhost");
        resolve_hosts("call", &mut names, &mut soon).await;
        assert!(resolved(&soon).is_none(), "not looked up within a minute of the last lookup");
        assert_eq!(names.known.len(), 8);
        names.looked_up = Instant::now().checked_sub(MEDIA_NAME_EVERY);
        let mut later = agreement_naming("localhost");
        resolve_hosts("call", &mut names, &mut later).await;
        assert!(resolved(&later).is_some(), "looked up a minute later");
        assert_eq!(names.known.len(), 8, "in place of the oldest");
        assert!(names.known.iter().all(|(n, _)| n != "name1.invalid"));
    }

    /// A re-offer's keys: renumbered or with a lifetime added, the same; another key or suite, not.
    #[test]
    fn re_offered_keys_are_compared_as_keys() {
        let key = |seed: u8, lifetime: Option<&str>| {
            let mk = MasterKey { key: vec![seed; 16], salt: vec![seed; 14], mki: None, lifetime: None };
            let params = sdes::format_key_params(&mk);
            lifetime.map_or(params.clone(), |l| format!("{params}|{l}"))
        };
        let agreement = |tag: u32, suite: &str, theirs: String, ours: String| sdp_negotiation::SdesAgreement {
            tag,
            suite: suite.to_owned(),
            local_key_params: ours,
            remote_key_params: theirs,
        };
        let old = agreement(1, "AES_CM_128_HMAC_SHA1_80", key(1, None), key(2, None));
        let renumbered = agreement(3, "AES_CM_128_HMAC_SHA1_80", key(1, Some("2^31")), key(2, None));
        assert_eq!(kept_keys(&old, &renumbered), (true, true));
        let rekeyed = agreement(1, "AES_CM_128_HMAC_SHA1_80", key(9, None), key(2, None));
        assert_eq!(kept_keys(&old, &rekeyed), (false, true));
        let other_suite = agreement(1, "AES_CM_128_HMAC_SHA1_32", key(1, None), key(2, None));
        assert_eq!(kept_keys(&old, &other_suite), (false, false));
    }

    fn times(timestamps: &[u32]) -> Vec<u64> {
        let (mut publish, mut last) = (1_000u64, None);
        timestamps.iter().map(|ts| opus_publish_time(&mut publish, &mut last, *ts)).collect()
    }

    /// The SIP party's Opus keeps its own timing in the session: in order, reordered, repeated,
    /// across the 32-bit wrap, and through a new source's jump.
    #[test]
    fn a_g722_far_end_stamping_at_16_khz_is_recognised() {
        let feed = |clock: &mut G722Clock, ssrc: u32, packets: &[(u16, u32)]| -> Vec<bool> {
            packets.iter().map(|(n, ts)| clock.observe(ssrc, *n, *ts, 160)).collect()
        };
        // RFC 3551: 160 a packet.
        let mut clock = G722Clock::default();
        let correct: Vec<(u16, u32)> = (0..20u16).map(|n| (n, u32::from(n) * 160)).collect();
        assert!(feed(&mut clock, 1, &correct).iter().all(|c| !c));
        assert_eq!(clock.scale(), 1);
        // 320 a packet: the eighth step in a row tells; a lost packet in between counts neither
        // way, a step of another size starts the count over.
        let mut clock = G722Clock::default();
        let mut doubled: Vec<(u16, u32)> = (0..6u16).map(|n| (n, u32::from(n) * 320)).collect();
        doubled.push((6, 6 * 320 + 4000)); // a talk spurt's jump
        doubled.extend((7..18u16).filter(|n| *n != 9).map(|n| (n, u32::from(n) * 320 + 4000)));
        let seen = feed(&mut clock, 1, &doubled);
        let told = seen.iter().position(|c| *c).map(|i| doubled[i].0);
        assert_eq!(told, Some(16), "the eighth step in a row after the jump, the lost 9th aside: {seen:?}");
        assert_eq!(clock.scale(), 2);
        // The far end starts stamping right (8 steps of 160): back to 8 kHz.
        let back: Vec<(u16, u32)> = (18..27u16).map(|n| (n, 20_000 + u32::from(n) * 160)).collect();
        let seen = feed(&mut clock, 1, &back);
        assert_eq!(seen.iter().position(|c| *c), Some(8), "the first step from 17 is a jump: {seen:?}");
        assert_eq!(clock.scale(), 1);
        // A new SSRC starts over.
        let mut clock = G722Clock::default();
        let doubled: Vec<(u16, u32)> = (0..10u16).map(|n| (n, u32::from(n) * 320)).collect();
        feed(&mut clock, 1, &doubled);
        assert_eq!(clock.scale(), 2);
        assert!(clock.observe(2, 500, 0, 160), "a new source: the reading changes");
        assert_eq!(clock.scale(), 1);
    }

    #[test]
    fn sip_opus_keeps_its_place_in_time() {
        assert_eq!(times(&[0, 960, 1920]), [1000, 1960, 2920]);
        // Swapped: each at its own time, and the one after in its place.
        assert_eq!(times(&[0, 1920, 960, 2880]), [1000, 2920, 1960, 3880]);
        // Repeated: the same time (the mixer drops the second).
        assert_eq!(times(&[0, 960, 960, 1920]), [1000, 1960, 1960, 2920]);
        // Across the wrap of the 32-bit timestamp.
        assert_eq!(times(&[u32::MAX - 959, 0, 960]), [1000, 1960, 2920]);
        // A jump of more than a minute (a new source): one packet on, then its own pace.
        assert_eq!(times(&[0, 960, 2_000_000_000, 2_000_000_960]), [1000, 1960, 2920, 3880]);
        // A lost packet leaves its gap (the mixer conceals it).
        assert_eq!(times(&[0, 1920]), [1000, 2920]);
        // From the start of the call: a packet reordered before the first keeps an earlier time.
        let (mut publish, mut last) = (PUBLISH_START, None);
        let first = opus_publish_time(&mut publish, &mut last, 5000);
        assert_eq!(opus_publish_time(&mut publish, &mut last, 4040), first - 960);
    }
}

#[cfg(test)]
mod presses_tests {
    use super::*;
    use dtmf_rfc4733::Digit;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A keypad's pace passes whole; a flood gets the burst, then the rate, and the first press
    /// let through again tells how many were dropped.
    #[test]
    fn a_flood_of_presses_is_cut_to_the_budget() {
        let mut b = DigitBudget::default();
        let t0 = Instant::now();
        // Ten presses a second for ten seconds.
        assert!((0..100u64).all(|n| b.take(t0 + ms(n * 100)).0));
        // A thousand in one instant: the burst (the keypad left it full); the first dropped says so.
        let at = t0 + ms(20_000);
        let results: Vec<(bool, Option<u64>)> = (0..1000).map(|_| b.take(at)).collect();
        assert_eq!(results.iter().filter(|r| r.0).count(), DigitBudget::BURST as usize);
        assert_eq!(results[DigitBudget::BURST as usize], (false, Some(0)));
        assert!(results[DigitBudget::BURST as usize + 1..].iter().all(|r| *r == (false, None)));
        // A second later, the rate's worth; the first tells of the 970 dropped.
        let (ok, dropped) = b.take(at + ms(1000));
        assert_eq!((ok, dropped), (true, Some(970)));
        let more = (0..100).filter(|_| b.take(at + ms(1000)).0).count();
        assert_eq!(more, DigitBudget::RATE as usize - 1);
    }

    /// Each press once, whichever of its INFO and its RFC 4733 digit comes first, however long
    /// the key is held; an INFO alone is reported after its wait; a second press of the same key
    /// is a second press.
    #[test]
    fn a_press_sent_both_ways_counts_once() {
        let t0 = Instant::now();
        let mut p = DtmfPresses::default();
        // INFO at key-down, RFC 4733 at key-up.
        p.info_digit(t0, Digit::Seven);
        assert!(p.due(t0 + ms(100)).is_empty());
        assert!(p.rtp_digit(t0 + ms(150), Digit::Seven, ms(120)), "reported from the media");
        assert!(p.due(t0 + ms(600)).is_empty(), "its INFO dropped");
        // RFC 4733 first, the INFO after it.
        assert!(p.rtp_digit(t0 + ms(1000), Digit::One, ms(100)));
        p.info_digit(t0 + ms(1200), Digit::One);
        assert!(p.due(t0 + ms(2000)).is_empty());
        // A long press: its INFO reported after the wait, its RFC 4733 digit 2 s later is the same.
        p.info_digit(t0 + ms(3000), Digit::Five);
        assert_eq!(p.due(t0 + ms(3400)), vec![Digit::Five]);
        assert!(!p.rtp_digit(t0 + ms(5000), Digit::Five, ms(2000)), "the same press");
        // INFO alone (a party that sends no RFC 4733 for this key): reported after the wait.
        p.info_digit(t0 + ms(6000), Digit::Pound);
        assert_eq!(p.due(t0 + ms(6400)), vec![Digit::Pound]);
        // The same key twice, both ways each time: twice.
        for k in 0..2u64 {
            let at = t0 + ms(8000 + k * 1500);
            p.info_digit(at, Digit::Two);
            assert!(p.rtp_digit(at + ms(150), Digit::Two, ms(100)), "press {k}");
        }
        assert!(p.due(t0 + ms(20_000)).is_empty());
    }
}
