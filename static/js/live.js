// Live pages' websocket (auction.js, job.js): a connection to a path on this page's host, ws://
// or wss:// as the page was loaded, whose JSON messages are handed on; when it is lost, opened
// again after a delay that doubles with each attempt (0.5 s up to 10 s, give or take a quarter,
// so a restarted server is not hit by every page at once) until the page stops it.
(function () {
  "use strict";

  var RECONNECT_MIN_MS = 500;
  var RECONNECT_MAX_MS = 10000;

  // handlers.message(data): each message, parsed. handlers.connecting(attempts): optional,
  // before each connection (0 for the first). handlers.lost(event): when the connection
  // closes; return false to stop there, anything else to reconnect.
  function LiveSocket(path, handlers) {
    this.path = path;
    this.handlers = handlers;
    this.socket = null;
    this.attempts = 0;
    this.stopped = false;
  }

  LiveSocket.prototype.connect = function () {
    var self = this;
    if (this.stopped || !("WebSocket" in window)) return;
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + this.path);
    this.socket = socket;
    if (this.handlers.connecting) this.handlers.connecting(this.attempts);
    socket.onmessage = function (message) {
      var data;
      try {
        data = JSON.parse(message.data);
      } catch (error) {
        return;
      }
      self.handlers.message(data);
    };
    socket.onclose = function (event) {
      if (self.socket !== socket) return; // an earlier connection
      self.socket = null;
      if (self.stopped) return;
      if (self.handlers.lost(event) === false) {
        self.stopped = true;
        return;
      }
      var delay = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * Math.pow(2, self.attempts));
      delay = delay * (0.75 + Math.random() * 0.5);
      self.attempts += 1;
      window.setTimeout(function () { self.connect(); }, delay);
    };
  };

  // The server answered on this connection: the next loss starts again from the shortest delay.
  LiveSocket.prototype.confirmed = function () {
    this.attempts = 0;
  };

  LiveSocket.prototype.isOpen = function () {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  };

  // Sends `message` as JSON; false if there is no open connection to send it on.
  LiveSocket.prototype.send = function (message) {
    if (!this.isOpen()) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  };

  // No more connections; the open one is closed.
  LiveSocket.prototype.stop = function () {
    this.stopped = true;
    if (this.socket) this.socket.close();
  };

  window.LiveSocket = LiveSocket;
})();
