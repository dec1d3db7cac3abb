// Unit tests of gateway-client.js under Node (`node --test`), against a scripted server: the
// browser's WebSocket, RTCPeerConnection and MediaStream are stand-ins that record what the
// client does. The end-to-end behaviour with real browsers is interop/tests/browser.rs.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');

/** The sockets opened so far; each test scripts its server with `socket.serve`. */
const sockets = [];

class FakeSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closeListeners = [];
    this.serve = FakeSocket.nextServe;
    sockets.push(this);
    setTimeout(() => {
      if (this.readyState !== 0) return;
      this.readyState = 1;
      if (this.onopen) this.onopen();
    });
  }

  send(text) {
    const msg = JSON.parse(text);
    this.sent.push(msg);
    // The server answers on a later turn, as over a network.
    setTimeout(() => this.serve(this, msg));
  }

  reply(msg, fields) { this.deliver(Object.assign({ type: 'ok', id: msg.id }, fields)); }
  refuse(msg, code, message) { this.deliver({ type: 'error', id: msg.id, code, message }); }
  event(name, fields) { this.deliver(Object.assign({ type: 'event', event: name }, fields)); }
  deliver(obj) { if (this.readyState === 1 && this.onmessage) this.onmessage({ data: JSON.stringify(obj) }); }

  addEventListener(name, fn) { if (name === 'close') this.closeListeners.push(fn); }

  close() {
    if (this.readyState >= 2) return;
    this.readyState = 3;
    setTimeout(() => {
      if (this.onclose) this.onclose();
      this.closeListeners.forEach((fn) => fn());
    });
  }
}
/** How the next socket's server answers: `(socket, msg) => ...`. */
FakeSocket.nextServe = () => {};
FakeSocket.CONNECTING = 0;
FakeSocket.OPEN = 1;
FakeSocket.CLOSING = 2;
FakeSocket.CLOSED = 3;

class FakePeerConnection {
  constructor() { this.closed = false; this.transceivers = []; this.connectionState = 'new'; }
  addTransceiver(what, options) { this.transceivers.push({ what, options }); }
  async createOffer() { return { type: 'offer', sdp: 'v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n' }; }
  async setLocalDescription(d) { this.localDescription = d; }
  async setRemoteDescription(d) {
    if (this.closed) throw new Error('InvalidStateError: the peer connection is closed');
    this.remoteDescription = d;
  }
  addEventListener() {}
  close() { this.closed = true; }
}

class FakeStream {
  constructor(tracks = []) { this.tracks = [...tracks]; }
  getTracks() { return [...this.tracks]; }
  getAudioTracks() { return this.tracks.filter((t) => t.kind === 'audio'); }
  getVideoTracks() { return this.tracks.filter((t) => t.kind === 'video'); }
  addTrack(t) { this.tracks.push(t); }
}

globalThis.WebSocket = FakeSocket;
globalThis.RTCPeerConnection = FakePeerConnection;
globalThis.MediaStream = FakeStream;

const Gateway = require('./gateway-client.js');

const microphone = () => new FakeStream([{ kind: 'audio', enabled: true, stop() {} }]);
const theirStream = { id: 'their-stream', connectionId: 'c2', hasAudio: true, hasVideo: false };

/** A session joined through a scripted server; `serve(socket, msg)` answers what follows. */
async function joined(serve) {
  const session = new Gateway.Session({ url: 'ws://gateway.test/rtc/v1/signal', sessionId: '1_test' });
  FakeSocket.nextServe = (s, msg) => {
    if (msg.type === 'join') s.reply(msg, { connection: { id: 'c1' }, connections: [{ id: 'c2' }], streams: [theirStream] });
    else serve(s, msg);
  };
  await session.connect('T1==token');
  assert.ok(session.streams.has(theirStream.id));
  return { session, socket: sockets[sockets.length - 1] };
}

test('a failed subscription is destroyed and reported, so the page can subscribe again', async () => {
  const { session, socket } = await joined((s, msg) => {
    if (msg.type === 'subscribe') s.reply(msg, { subscriptionId: '7', sdp: 'v=0\r\n' });
  });
  const sub = await session.subscribe(theirStream.id);
  const destroyed = new Promise((resolve) => sub.on('destroyed', resolve));
  const reported = new Promise((resolve) => session.on('subscriberFailed', resolve));
  socket.event('subscriberFailed', { streamId: theirStream.id, subscriptionId: '7' });
  assert.equal((await destroyed).reason, 'mediaFailed');
  assert.equal((await reported).subscriptionId, '7');
  assert.ok(sub.pc.closed, 'its peer connection is closed');
  assert.equal(session.subscribers.length, 0);
});

test('a mute of a new stream that comes before its publish reply still mutes it', async () => {
  const { session } = await joined((s, msg) => {
    if (msg.type !== 'publish') return;
    // A session-wide mute in force: the server mutes the new stream and says so first.
    s.event('muteForced', { streamId: 'new-stream' });
    s.reply(msg, { stream: { id: 'new-stream', hasAudio: true, hasVideo: false }, sdp: 'v=0\r\n' });
  });
  const publisher = await session.publish({ mediaStream: microphone(), video: false });
  assert.equal(publisher.stream.id, 'new-stream');
  assert.equal(publisher.audioEnabled, false, 'muted');
});

test('a mute seen while an earlier publish was in flight does not mute a later one', async () => {
  let first = true;
  const { session } = await joined((s, msg) => {
    if (msg.type !== 'publish') return;
    if (first) {
      first = false;
      s.event('muteForced', { active: true, excludedStreamIds: [] });
      s.refuse(msg, 400, 'the offer has no audio or video m-line');
    } else {
      s.reply(msg, { stream: { id: 'later', hasAudio: true, hasVideo: false }, sdp: 'v=0\r\n' });
    }
  });
  await assert.rejects(session.publish({ mediaStream: microphone(), video: false }), (e) => e.code === 400);
  const later = await session.publish({ mediaStream: microphone(), video: false });
  assert.equal(later.audioEnabled, true, 'not muted by the old event');
});

test('muteForced tells which of our publishers it muted', async () => {
  const { session, socket } = await joined((s, msg) => {
    if (msg.type === 'publish') s.reply(msg, { stream: { id: 'mine', hasAudio: true, hasVideo: false }, sdp: 'v=0\r\n' });
  });
  const publisher = await session.publish({ mediaStream: microphone(), video: false });
  const events = [];
  session.on('muteForced', (e) => events.push(e));
  socket.event('muteForced', { active: true, excludedStreamIds: ['mine'] });
  socket.event('muteForced', { active: false });
  socket.event('muteForced', { active: true, excludedStreamIds: [] });
  assert.deepEqual(events.map((e) => e.mutedPublishers.length), [0, 0, 1]);
  assert.equal(events[2].mutedPublishers[0], publisher);
  assert.equal(publisher.audioEnabled, false);
});

test('a stream destroyed before the subscribe reply ends the subscription at once', async () => {
  const { session } = await joined((s, msg) => {
    if (msg.type !== 'subscribe') return;
    s.event('streamDestroyed', { stream: theirStream, reason: 'clientDisconnected' });
    s.reply(msg, { subscriptionId: '8', sdp: 'v=0\r\n' });
  });
  await assert.rejects(session.subscribe(theirStream.id), (e) => e.code === 404);
  assert.equal(session.subscribers.length, 0, 'no subscriber left behind');
});

test('unsubscribing what the server already forgot is no failure; other refusals are', async () => {
  let unsubscribeCode = 404;
  const { session } = await joined((s, msg) => {
    if (msg.type === 'subscribe') s.reply(msg, { subscriptionId: String(msg.id), sdp: 'v=0\r\n' });
    if (msg.type === 'unsubscribe') s.refuse(msg, unsubscribeCode, 'no such subscription');
  });
  const sub = await session.subscribe(theirStream.id);
  await sub.unsubscribe();
  assert.ok(sub.destroyed);
  unsubscribeCode = 500;
  const other = await session.subscribe(theirStream.id);
  await assert.rejects(other.unsubscribe(), (e) => e.code === 500);
});

test('a disconnect that interrupts connect does not make a later drop look chosen', async () => {
  const session = new Gateway.Session({ url: 'ws://gateway.test/rtc/v1/signal', sessionId: '1_test' });
  FakeSocket.nextServe = (s, msg) => s.reply(msg, { connection: { id: 'c1' }, connections: [], streams: [] });
  const first = session.connect('T1==token').catch((e) => e);
  await session.disconnect(); // before the socket opened
  assert.equal((await first).code, 'socketError');
  // Connected again, the connection is lost without leaving: a network drop, not our choice.
  await session.connect('T1==token');
  const gone = new Promise((resolve) => session.on('sessionDisconnected', resolve));
  sockets[sockets.length - 1].close();
  assert.equal((await gone).reason, 'networkDisconnected');
});
