/*
 * gateway-client.js: a small, dependency-free browser client for the gateway's WebRTC
 * signalling protocol (docs/signalling.md). Load it with
 *   <script src="/client/gateway-client.js"></script>
 * and use the global `Gateway`. Every peer connection is offered by this client and answered
 * by the gateway (ICE-lite), one per published stream and one per subscription.
 */
(function (root) {
  'use strict';

  const MAX_FRAME_BYTES = 64 * 1024;
  const MAX_SIGNAL_TYPE_BYTES = 128;
  const MAX_SIGNAL_DATA_BYTES = 8 * 1024;
  const LEAVE_TIMEOUT_MS = 3000;
  const byteLength = (s) => new TextEncoder().encode(s).length;

  /** An error with a `code`: the server's HTTP-like status (400, 403, 404, 409, 413, 429 for
   *  too many subscriptions or signals sent too fast, 500), or a string for local failures: 'notConnected', 'alreadyConnected', 'disconnected' (the socket
   *  closed before the reply), 'frameTooLarge', 'socketError', 'protocol', 'mediaFailed'. */
  class GatewayError extends Error {
    constructor(message, code) {
      super(message);
      this.name = 'GatewayError';
      this.code = code;
    }
  }

  /** Minimal event emitter shared by Session, Publisher and Subscriber. */
  class Emitter {
    constructor() { this._handlers = new Map(); }

    /** Registers `handler` for the event `name`. @returns {this} */
    on(name, handler) {
      if (typeof name !== 'string' || !name) throw new TypeError('event name must be a non-empty string');
      if (typeof handler !== 'function') throw new TypeError('event handler must be a function');
      if (!this._handlers.has(name)) this._handlers.set(name, new Set());
      this._handlers.get(name).add(handler);
      return this;
    }

    /** Removes a handler added with on(); without `handler`, removes all handlers of `name`. @returns {this} */
    off(name, handler) {
      if (handler === undefined) this._handlers.delete(name);
      else if (this._handlers.has(name)) this._handlers.get(name).delete(handler);
      return this;
    }

    _emit(name, event) {
      for (const handler of [...(this._handlers.get(name) || [])]) {
        try { handler.call(this, event); } catch (e) { console.error(`Gateway: "${name}" handler threw`, e); }
      }
    }
  }

  /** Stops tracks this client acquired itself; never the caller's own tracks. */
  function stopOwnedTracks(mediaStream, owned) {
    if (owned && mediaStream) mediaStream.getTracks().forEach((t) => t.stop());
  }

  /** For a request whose local side is done already: the server having forgotten it (404, the
   *  connection removed meanwhile) or the socket closing is no failure; anything else is. */
  function alreadyGone(e) {
    if (!(e instanceof GatewayError) || ![404, 'disconnected', 'notConnected'].includes(e.code)) throw e;
  }

  /** Whether a `muteForced` event (one stream's, or session-wide) mutes the stream `streamId`. */
  function muteTargets(ev, streamId) {
    return ev.streamId !== undefined && ev.streamId !== null
      ? ev.streamId === streamId
      : ev.active !== false && !(ev.excludedStreamIds || []).includes(streamId);
  }

  function idOf(value, what) {
    const id = typeof value === 'object' && value !== null ? value.id : value;
    if (typeof id !== 'string' || !id) throw new TypeError(`${what} must be an id string or an object with an id`);
    return id;
  }

  /** What Publisher and Subscriber share: one peer connection with the gateway. */
  class PeerHandle extends Emitter {
    constructor(session, pc, kind) {
      super();
      this.session = session;
      this.pc = pc;
      this.destroyed = false;
      // An ICE or DTLS failure is reported as a session 'error' event (error.target: this).
      pc.addEventListener('connectionstatechange', () => {
        if (pc.connectionState !== 'failed' || this.destroyed) return;
        session._emit('error', Object.assign(new GatewayError(`${kind} peer connection failed`, 'mediaFailed'), { target: this }));
      });
    }

    _destroy(reason) {
      if (this.destroyed) return;
      this.destroyed = true;
      this.pc.close();
      this._release();
      this._emit('destroyed', { reason });
    }
  }

  /**
   * A stream published by this client. Events: 'destroyed' ({reason}).
   * @property {object} stream the stream object from the publish reply
   * @property {MediaStream} mediaStream the local media being sent
   * @property {RTCPeerConnection} pc
   */
  class Publisher extends PeerHandle {
    constructor(session, pc, mediaStream, ownsTracks) {
      super(session, pc, 'publisher');
      this.mediaStream = mediaStream;
      this.stream = null;
      this._ownsTracks = ownsTracks;
    }

    /** Enables or disables (mutes) the published audio tracks. */
    setAudioEnabled(enabled) {
      this.mediaStream.getAudioTracks().forEach((t) => { t.enabled = !!enabled; });
    }

    /** Whether any published audio track is enabled. */
    get audioEnabled() { return this.mediaStream.getAudioTracks().some((t) => t.enabled); }

    /** Stops publishing: tells the gateway (if still connected), closes the peer connection. */
    async unpublish() {
      if (this.destroyed) return;
      const streamId = this.stream && this.stream.id;
      this._destroy('clientDisconnected');
      if (streamId && this.session.isConnected) await this.session._request('unpublish', { streamId }).catch(alreadyGone);
    }

    _release() {
      stopOwnedTracks(this.mediaStream, this._ownsTracks);
      if (this.stream) this.session._publishers.delete(this.stream.id);
    }
  }

  /**
   * A subscription to a stream. Events: 'track' (RTCTrackEvent), 'destroyed' ({reason}).
   * @property {string} subscriptionId
   * @property {object} stream
   * @property {MediaStream} mediaStream remote tracks, filled as they arrive
   * @property {RTCPeerConnection} pc
   */
  class Subscriber extends PeerHandle {
    constructor(session, stream, pc) {
      super(session, pc, 'subscriber');
      this.stream = stream;
      this.subscriptionId = null;
      this.mediaStream = new MediaStream();
      pc.ontrack = (e) => {
        this.mediaStream.addTrack(e.track);
        this._emit('track', e);
      };
    }

    /** @returns {Promise<RTCStatsReport>} the peer connection's statistics */
    getStats() { return this.pc.getStats(); }

    /** Ends the subscription: tells the gateway (if still connected), closes the peer connection. */
    async unsubscribe() {
      if (this.destroyed) return;
      const subscriptionId = this.subscriptionId;
      this._destroy('clientDisconnected');
      if (subscriptionId && this.session.isConnected) await this.session._request('unsubscribe', { subscriptionId }).catch(alreadyGone);
    }

    _release() {
      if (this.subscriptionId) this.session._subscribers.delete(this.subscriptionId);
    }
  }

  /**
   * A connection to one routed session of the gateway.
   *
   * Events (handlers receive the server's event object, e.g. `{event, connection, reason}`):
   * connectionCreated, connectionDestroyed, streamCreated, streamDestroyed, signal,
   * 'signal:<type>', muteForced (with `mutedPublishers`: ours it muted), subscriberFailed
   * ({streamId, subscriptionId}: that subscriber is destroyed with reason 'mediaFailed'; subscribe
   * again), sessionDisconnected ({reason}), error (GatewayError).
   */
  class Session extends Emitter {
    /**
     * @param {{url: string, sessionId: string}} options `url` is the signalling WebSocket,
     *   e.g. 'wss://host/rtc/v1/signal'.
     */
    constructor(options) {
      super();
      const { url, sessionId } = options || {};
      if (typeof url !== 'string' || !/^wss?:\/\//.test(url)) throw new TypeError('url must be a ws:// or wss:// URL');
      if (typeof sessionId !== 'string' || !sessionId) throw new TypeError('sessionId must be a non-empty string');
      this.url = url;
      this.sessionId = sessionId;
      /** Our own connection object (null until joined). */
      this.connection = null;
      /** The other connections of the session, by id. */
      this.connections = new Map();
      /** Streams published by others, by id (our own are in `publishers`). */
      this.streams = new Map();
      this._ws = null;
      this._joined = false;
      this._nextId = 1;
      this._pending = new Map();
      this._publishers = new Map(); // stream id -> Publisher
      this._subscribers = new Map(); // subscription id -> Subscriber
      this._disconnectReason = null;
      this._leaving = false;
      // Publish requests in flight, and the mutes that came meanwhile: the server may mute a new
      // stream (a session-wide mute in force) before its publish reply arrives.
      this._publishing = 0;
      this._earlyMutes = []; // {n, ev}: the n-th muteForced seen, while a publish was in flight
      this._mutesSeen = 0;
    }

    /** Whether the session is joined and its WebSocket open. */
    get isConnected() { return this._joined && !!this._ws && this._ws.readyState === WebSocket.OPEN; }
    /** Our active publishers. @returns {Publisher[]} */
    get publishers() { return [...this._publishers.values()]; }
    /** Our active subscribers. @returns {Subscriber[]} */
    get subscribers() { return [...this._subscribers.values()]; }

    /**
     * Opens the WebSocket and joins the session.
     * @param {string} token a client token for this session
     * @returns {Promise<object>} the join reply ({connection, connections, streams})
     */
    async connect(token) {
      if (typeof token !== 'string' || !token) throw new TypeError('token must be a non-empty string');
      if (this._ws) throw new GatewayError('already connected (or connecting)', 'alreadyConnected');
      // A disconnect() that interrupted an earlier connect() left these set.
      this._leaving = false;
      this._disconnectReason = null;
      const ws = new WebSocket(this.url);
      this._ws = ws;
      try {
        await new Promise((resolve, reject) => {
          ws.onopen = resolve;
          ws.onerror = ws.onclose = () => reject(new GatewayError(`cannot open WebSocket ${this.url}`, 'socketError'));
        });
      } catch (e) {
        this._ws = null;
        throw e;
      }
      ws.onerror = () => this._emit('error', new GatewayError('WebSocket error', 'socketError'));
      ws.onmessage = (e) => this._onMessage(e.data);
      ws.onclose = () => this._onClose();
      let reply;
      try {
        reply = await this._request('join', { sessionId: this.sessionId, token }, true);
      } catch (e) {
        if (this._ws === ws) { // not closed yet: close it quietly, so connect() may be retried at once
          this._ws = null;
          ws.onmessage = ws.onclose = ws.onerror = null;
          ws.close();
        }
        throw e;
      }
      this._joined = true;
      this.connection = reply.connection;
      // Fill the existing maps, so references held by the application stay valid.
      this.connections.clear();
      this.streams.clear();
      for (const c of reply.connections || []) this.connections.set(c.id, c);
      for (const s of reply.streams || []) this.streams.set(s.id, s);
      return reply;
    }

    /**
     * Publishes local media. Without `mediaStream`, captures it with getUserMedia.
     * @param {{audio?: boolean|MediaTrackConstraints, video?: boolean|MediaTrackConstraints,
     *   name?: string, videoType?: 'camera'|'screen'|'custom', mediaStream?: MediaStream}} [options]
     * @returns {Promise<Publisher>}
     */
    async publish(options) {
      this._requireConnected();
      const { audio = true, video = true, name, videoType, mediaStream } = options || {};
      if (!audio && !video) throw new TypeError('publish needs audio and/or video');
      if (name !== undefined && typeof name !== 'string') throw new TypeError('name must be a string');
      if (videoType !== undefined && !['camera', 'screen', 'custom'].includes(videoType)) throw new TypeError("videoType must be 'camera', 'screen' or 'custom'");
      if (mediaStream !== undefined && !(mediaStream instanceof MediaStream)) throw new TypeError('mediaStream must be a MediaStream');

      const ownsTracks = !mediaStream;
      const source = mediaStream || await navigator.mediaDevices.getUserMedia({ audio, video });
      // At most one track of each kind, as the gateway expects.
      const tracks = [audio && source.getAudioTracks()[0], video && source.getVideoTracks()[0]].filter(Boolean);
      if (!tracks.length) {
        stopOwnedTracks(source, ownsTracks);
        throw new TypeError('no audio or video track to publish');
      }
      const local = ownsTracks ? source : new MediaStream(tracks);
      const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
      const publisher = new Publisher(this, pc, local, ownsTracks);
      try {
        for (const track of tracks) pc.addTransceiver(track, { direction: 'sendonly', streams: [local] });
        await pc.setLocalDescription(await pc.createOffer());
        const hasVideo = tracks.some((t) => t.kind === 'video');
        // Mutes that come after this request and before its reply may be of the new stream.
        const since = this._mutesSeen;
        this._publishing += 1;
        let reply;
        try {
          reply = await this._request('publish', { sdp: pc.localDescription.sdp, name, videoType: hasVideo ? videoType : undefined });
          publisher.stream = reply.stream;
          this._publishers.set(reply.stream.id, publisher);
          if (this._earlyMutes.some(({ n, ev }) => n >= since && muteTargets(ev, reply.stream.id))) publisher.setAudioEnabled(false);
        } finally {
          this._publishing -= 1;
          if (!this._publishing) this._earlyMutes = [];
        }
        await pc.setRemoteDescription({ type: 'answer', sdp: reply.sdp });
      } catch (e) {
        if (publisher.stream) publisher.unpublish().catch(() => {});
        else publisher._destroy('mediaStopped');
        throw e;
      }
      return publisher;
    }

    /**
     * Subscribes to a stream published by another connection.
     * @param {object|string} streamOrId a stream object or its id
     * @returns {Promise<Subscriber>}
     */
    async subscribe(streamOrId) {
      this._requireConnected();
      const id = idOf(streamOrId, 'stream');
      const own = this._publishers.get(id);
      const stream = this.streams.get(id) || (own && own.stream) || (typeof streamOrId === 'object' ? streamOrId : null);
      if (!stream) throw new GatewayError(`unknown stream ${id}`, 404);
      if (!stream.hasAudio && !stream.hasVideo) throw new GatewayError(`stream ${id} has no media`, 400);

      const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
      const subscriber = new Subscriber(this, stream, pc);
      const known = this.streams.has(id);
      try {
        if (stream.hasAudio) pc.addTransceiver('audio', { direction: 'recvonly' });
        if (stream.hasVideo) pc.addTransceiver('video', { direction: 'recvonly' });
        await pc.setLocalDescription(await pc.createOffer());
        const reply = await this._request('subscribe', { streamId: id, sdp: pc.localDescription.sdp });
        subscriber.subscriptionId = reply.subscriptionId;
        this._subscribers.set(reply.subscriptionId, subscriber);
        // Its streamDestroyed may come before this reply: then the subscription is already over.
        if (known && !this.streams.has(id)) subscriber._destroy('mediaStopped');
        await pc.setRemoteDescription({ type: 'answer', sdp: reply.sdp });
      } catch (e) {
        if (subscriber.destroyed) throw new GatewayError(`stream ${id} ended while subscribing`, 404);
        if (subscriber.subscriptionId) subscriber.unsubscribe().catch(() => {});
        else subscriber._destroy('mediaStopped');
        throw e;
      }
      return subscriber;
    }

    /**
     * Sends a signal to one connection (`to`: id or connection object) or to everyone.
     * @param {{type?: string, data?: string, to?: string|object}} options
     */
    async signal({ type = '', data = '', to } = {}) {
      this._requireConnected();
      if (typeof type !== 'string' || byteLength(type) > MAX_SIGNAL_TYPE_BYTES) {
        throw new TypeError(`signal type must be a string of at most ${MAX_SIGNAL_TYPE_BYTES} bytes`);
      }
      if (typeof data !== 'string') throw new TypeError('signal data must be a string');
      if (byteLength(data) > MAX_SIGNAL_DATA_BYTES) throw new GatewayError(`signal data exceeds ${MAX_SIGNAL_DATA_BYTES} bytes`, 413);
      const target = to === undefined || to === null ? null : idOf(to, 'to');
      await this._request('signal', { signalType: type, data, to: target });
    }

    /** Moderator: disconnects a connection (id or object) from the session. */
    async forceDisconnect(connectionId) {
      this._requireConnected();
      await this._request('forceDisconnect', { connectionId: idOf(connectionId, 'connection') });
    }

    /** Moderator: mutes the audio of a stream (id or object). */
    async forceMute(streamId) {
      this._requireConnected();
      await this._request('forceMute', { streamId: idOf(streamId, 'stream') });
    }

    /**
     * Moderator: mutes every stream of the session except `excludedStreamIds`; `active`
     * also mutes streams published later (false turns that off).
     */
    async forceMuteAll(active = true, excludedStreamIds = []) {
      this._requireConnected();
      if (typeof active !== 'boolean') throw new TypeError('active must be a boolean');
      if (!Array.isArray(excludedStreamIds)) throw new TypeError('excludedStreamIds must be an array');
      await this._request('forceMuteAll', { active, excludedStreamIds: excludedStreamIds.map((s) => idOf(s, 'stream')) });
    }

    /** Leaves the session and closes the WebSocket and every peer connection. */
    async disconnect() {
      const ws = this._ws;
      if (!ws || ws.readyState >= WebSocket.CLOSING) return;
      this._leaving = true;
      if (this._joined) {
        const timeout = new Promise((resolve) => setTimeout(resolve, LEAVE_TIMEOUT_MS));
        await Promise.race([this._request('leave', {}).catch(() => {}), timeout]);
      }
      if (ws.readyState < WebSocket.CLOSING) ws.close(1000);
      // Wait for the close handler, which cleans up and emits sessionDisconnected.
      if (this._ws === ws) await new Promise((resolve) => ws.addEventListener('close', resolve, { once: true }));
    }

    // ---- internals ----

    _requireConnected() {
      if (!this.isConnected) throw new GatewayError('not connected to the session', 'notConnected');
    }

    /** Sends a request and returns a promise of its reply. */
    _request(type, fields, beforeJoin = false) {
      if (!this._ws || this._ws.readyState !== WebSocket.OPEN || (!beforeJoin && !this._joined)) {
        return Promise.reject(new GatewayError('not connected to the session', 'notConnected'));
      }
      const id = this._nextId++;
      const frame = JSON.stringify(Object.assign({ type, id }, fields));
      if (byteLength(frame) > MAX_FRAME_BYTES) {
        return Promise.reject(new GatewayError(`${type} request exceeds ${MAX_FRAME_BYTES} bytes`, 'frameTooLarge'));
      }
      return new Promise((resolve, reject) => {
        this._pending.set(id, { resolve, reject, type });
        this._ws.send(frame);
      });
    }

    _onMessage(text) {
      let msg;
      try { msg = JSON.parse(text); } catch (e) {
        this._emit('error', new GatewayError('received a frame that is not JSON', 'protocol'));
        return;
      }
      if (msg.type === 'ok' || msg.type === 'error') {
        const pending = this._pending.get(msg.id);
        if (!pending) {
          // Unsolicited errors (e.g. for an unreadable frame) carry "id": null.
          if (msg.type === 'error') this._emit('error', new GatewayError(msg.message || 'server error', msg.code));
          return;
        }
        this._pending.delete(msg.id);
        if (msg.type === 'ok') pending.resolve(msg);
        else pending.reject(new GatewayError(`${pending.type} failed: ${msg.message || 'error'}`, msg.code));
      } else if (msg.type === 'event') {
        this._onEvent(msg);
      }
    }

    _onEvent(ev) {
      switch (ev.event) {
        case 'connectionCreated':
          if (ev.connection) this.connections.set(ev.connection.id, ev.connection);
          break;
        case 'connectionDestroyed':
          if (ev.connection) this.connections.delete(ev.connection.id);
          break;
        case 'streamCreated':
          if (ev.stream) this.streams.set(ev.stream.id, ev.stream);
          break;
        case 'streamDestroyed': {
          const id = ev.stream && ev.stream.id;
          this.streams.delete(id);
          for (const sub of this.subscribers) if (sub.stream.id === id) sub._destroy(ev.reason);
          const pub = this._publishers.get(id);
          if (pub) pub._destroy(ev.reason);
          break;
        }
        case 'muteForced': {
          const muted = this.publishers.filter((pub) => muteTargets(ev, pub.stream.id));
          muted.forEach((pub) => pub.setAudioEnabled(false));
          const n = this._mutesSeen++;
          if (this._publishing && this._earlyMutes.length < 100) this._earlyMutes.push({ n, ev });
          this._emit('muteForced', Object.assign({}, ev, { mutedPublishers: muted }));
          return;
        }
        case 'subscriberFailed': {
          // The server gave this subscription's peer connection up (failed, or never connected).
          const sub = this._subscribers.get(ev.subscriptionId);
          if (sub) sub._destroy('mediaFailed');
          break;
        }
        case 'sessionDisconnected':
          // Sent last: the server closes the socket next; the event is emitted once, from _onClose.
          this._disconnectReason = ev.reason || 'networkDisconnected';
          if (this._ws) this._ws.close(1000);
          return;
        case 'signal':
          this._emit('signal', ev);
          this._emit(`signal:${ev.signalType}`, ev);
          return;
        default:
          break;
      }
      this._emit(ev.event, ev);
    }

    _onClose() {
      const wasJoined = this._joined;
      this._ws = null;
      this._joined = false;
      const reason = this._disconnectReason || (this._leaving ? 'clientDisconnected' : 'networkDisconnected');
      const error = new GatewayError('the WebSocket closed', 'disconnected');
      for (const { reject } of this._pending.values()) reject(error);
      this._pending.clear();
      for (const sub of this.subscribers) sub._destroy(reason);
      for (const pub of this.publishers) pub._destroy(reason);
      this.connections.clear();
      this.streams.clear();
      this._disconnectReason = null;
      this._leaving = false;
      this._earlyMutes = [];
      if (wasJoined) this._emit('sessionDisconnected', { event: 'sessionDisconnected', reason });
    }

  }

  const Gateway = { Session, Publisher, Subscriber, GatewayError };
  root.Gateway = Gateway;
  if (typeof module !== 'undefined' && module.exports) module.exports = Gateway;
})(typeof window !== 'undefined' ? window : globalThis);
