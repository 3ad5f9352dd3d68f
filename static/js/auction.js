// Live auctions. On the list: countdowns from the server's clock. On an auction's page: the
// websocket feed (snapshot, then events numbered by seq), the countdown, the bid history and
// its SVG chart, and bids sent over the websocket. Without this file every page still works:
// the server renders the state and the bid form posts normally. The auction's page loads
// live.js (the websocket) before this file.
(function () {
  "use strict";

  var SVG_NS = "http://www.w3.org/2000/svg";
  var HISTORY_ROWS = 50;
  var CLOSE_NOT_FOUND = 4404;
  // The server's live channel (its channel layer, Redis) does not answer: try again later.
  var CLOSE_LIVE_UNAVAILABLE = 4503;
  var PAUSED_TEXT = "Live updates paused — reconnecting…";

  // --- Money and time ---------------------------------------------------------------------

  function moneyFormat(minor, currency, exponent) {
    if (minor === null || minor === undefined) return "";
    var sign = minor < 0 ? "-" : "";
    var factor = Math.pow(10, exponent);
    var absolute = Math.abs(minor);
    var major = Math.floor(absolute / factor);
    var text = String(major).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    if (exponent) text += "." + String(absolute % factor).padStart(exponent, "0");
    return sign + text + " " + currency;
  }

  // "12.5" -> 1250 (exponent 2); NaN for anything that is not a plain positive amount.
  function moneyParse(text, exponent) {
    var cleaned = String(text).replace(/,/g, "").trim();
    var match = /^(\d+)(?:\.(\d*))?$/.exec(cleaned);
    if (!match) return NaN;
    var fraction = match[2] || "";
    if (fraction.length > exponent) {
      if (/[^0]/.test(fraction.slice(exponent))) return NaN;
      fraction = fraction.slice(0, exponent);
    }
    var value = Number(match[1] + fraction.padEnd(exponent, "0"));
    return Number.isSafeInteger(value) ? value : NaN;
  }

  function pad2(n) {
    return String(n).padStart(2, "0");
  }

  function durationFormat(ms) {
    var total = Math.max(0, Math.floor(ms / 1000));
    var days = Math.floor(total / 86400);
    var hours = Math.floor((total % 86400) / 3600);
    var minutes = Math.floor((total % 3600) / 60);
    var seconds = total % 60;
    if (days) return days + " d " + pad2(hours) + ":" + pad2(minutes) + ":" + pad2(seconds);
    if (hours) return hours + ":" + pad2(minutes) + ":" + pad2(seconds);
    return minutes + ":" + pad2(seconds);
  }

  function clockFormat(ms) {
    var d = new Date(ms);
    return pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds());
  }

  function dateTimeFormat(ms) {
    var d = new Date(ms);
    return d.getFullYear() + "-" + pad2(d.getMonth() + 1) + "-" + pad2(d.getDate()) + " " + clockFormat(ms);
  }

  // --- The list: countdowns ---------------------------------------------------------------

  function listCountdownsStart(table) {
    var offset = Date.parse(table.getAttribute("data-server-time")) - Date.now();
    var cells = table.querySelectorAll("[data-countdown]");
    function tick() {
      var now = Date.now() + offset;
      cells.forEach(function (cell) {
        var left = Date.parse(cell.getAttribute("data-countdown")) - now;
        cell.textContent = left > 0 ? durationFormat(left) : "Closing…";
      });
    }
    if (cells.length) {
      tick();
      window.setInterval(tick, 1000);
    }
  }

  // --- The auction page -------------------------------------------------------------------

  function AuctionPage(root, config) {
    this.root = root;
    this.config = config;
    this.currency = config.currency;
    this.exponent = config.exponent;
    this.el = {};
    var self = this;
    root.querySelectorAll("[data-live]").forEach(function (node) {
      self.el[node.getAttribute("data-live")] = node;
    });
    this.state = null;
    this.bids = {}; // seq -> bid, everything seen since the page loaded
    this.youBid = Boolean(config.you_bid);
    this.paused = false;
    this.live = new window.LiveSocket(config.ws_path, {
      connecting: function (attempts) {
        // while paused, the notice says it all
        self.connectionShow("offline", self.paused ? "" : attempts ? "Reconnecting…" : "Connecting…");
      },
      message: function (data) { self.receive(data); },
      lost: function (event) {
        if (event.code === CLOSE_NOT_FOUND) {
          self.connectionShow("offline", "This auction is not available live.");
          return false;
        }
        // the connection or the server's live channel (CLOSE_LIVE_UNAVAILABLE) is gone
        self.pausedShow();
      },
    });
    this.resyncing = false;
    this.pendingBid = null;
    this.pendingSocket = null; // the connection the pending bid was last sent on
    this.snapshotApply(config.snapshot);
    this.formEnhance();
    this.live.connect();
    window.setInterval(function () { self.tick(); }, 250);
    window.setInterval(function () { self.chartDraw(); }, 1000);
  }

  AuctionPage.prototype.money = function (minor) {
    return moneyFormat(minor, this.currency, this.exponent);
  };

  AuctionPage.prototype.now = function () {
    return Date.now() + this.offset;
  };

  // --- The websocket ---

  AuctionPage.prototype.isConnected = function () {
    return this.live.isOpen();
  };

  AuctionPage.prototype.send = function (message) {
    return this.live.send(message);
  };

  AuctionPage.prototype.connectionShow = function (mode, text) {
    this.root.setAttribute("data-connection", mode);
    if (this.el.connection) this.el.connection.textContent = text;
  };

  // Live updates stopped (the connection, or the server's live channel, is gone): say so until
  // a snapshot arrives on a new connection. The page stays usable: without a connection the
  // bid form posts normally, and a bid still waiting for its answer may be posted that way
  // (its client_bid_id places it at most once).
  AuctionPage.prototype.pausedShow = function () {
    this.paused = true;
    this.resyncing = false;
    this.connectionShow("offline", "");
    this.text("paused", PAUSED_TEXT);
    if (this.pendingBid) {
      this.submitBusy(false);
      this.feedbackShow(
        "pending",
        "Your bid of " + this.money(this.pendingBid.amount_minor) +
          " is sent again once reconnected, or press Place bid to send it now."
      );
    }
  };

  AuctionPage.prototype.pausedHide = function () {
    this.paused = false;
    this.text("paused", "");
  };

  AuctionPage.prototype.receive = function (data) {
    switch (data.type) {
      case "snapshot":
        this.live.confirmed();
        this.resyncing = false;
        this.snapshotApply(data);
        this.pausedHide();
        this.connectionShow("live", "Live");
        // A bid sent just before the connection dropped is sent again on the new one: the
        // same client_bid_id makes the exchange answer with the first outcome, not bid twice.
        var socket = this.live.socket;
        if (this.pendingBid && this.pendingSocket !== socket && this.send(this.pendingBid)) {
          this.pendingSocket = socket;
        }
        return;
      case "bid.accepted":
        this.bidAccepted(data);
        return;
      case "buy_now.accepted":
        this.feedbackShow("success", "You bought this block for " + this.money(data.price_minor) + ".");
        return;
      case "error":
        this.errorShow(data);
        return;
      case "live.paused":
        this.pausedShow(); // the server closes this connection next
        return;
    }
    if (typeof data.seq !== "number" || this.state === null) return;
    if (data.seq <= this.state.seq) return; // already in the state we show
    if (data.seq > this.state.seq + 1) {
      // Missed an event: draw nothing from this one; the snapshot brings everything.
      if (!this.resyncing) {
        this.resyncing = this.send({ type: "snapshot" });
      }
      return;
    }
    this.eventApply(data);
  };

  // --- State ---

  AuctionPage.prototype.snapshotApply = function (snapshot) {
    if (this.state !== null && snapshot.seq < this.state.seq) return;
    this.offset = Date.parse(snapshot.server_time) - Date.now();
    this.state = {
      seq: snapshot.seq,
      status: snapshot.status,
      price: snapshot.price_minor,
      startPrice: snapshot.start_price_minor,
      minNext: snapshot.min_next_minor,
      leader: snapshot.leader,
      bidCount: snapshot.bid_count,
      hasReserve: snapshot.has_reserve,
      reserveMet: snapshot.reserve_met,
      buyNow: snapshot.buy_now_minor,
      opensAt: Date.parse(snapshot.opens_at),
      closesAt: Date.parse(snapshot.closes_at),
      extended: this.state ? this.state.extended : false,
      you: snapshot.you || null,
      youLead: Boolean(snapshot.you_lead),
      winner: this.state ? this.state.winner : null,
      boughtNow: this.state ? this.state.boughtNow : false,
    };
    var self = this;
    var snapshotBids = snapshot.bids || [];
    if (snapshotBids.length) {
      // A bid seen before, within the snapshot's span but not in it, was retracted.
      var oldest = snapshotBids[0].seq;
      var standing = {};
      snapshotBids.forEach(function (bid) { standing[bid.seq] = true; });
      Object.keys(this.bids).forEach(function (seq) {
        if (Number(seq) >= oldest && !standing[seq]) delete self.bids[seq];
      });
    } else if (snapshot.bid_count === 0) {
      this.bids = {};
    }
    snapshotBids.forEach(function (bid) { self.bidRemember(bid); });
    this.render();
  };

  AuctionPage.prototype.bidRemember = function (bid) {
    this.bids[bid.seq] = bid;
    if (this.state.you && bid.bidder === this.state.you) this.youBid = true;
  };

  AuctionPage.prototype.eventApply = function (event) {
    var state = this.state;
    state.seq = event.seq;
    switch (event.type) {
      case "bid.placed":
        state.status = "open";
        state.price = event.price_minor;
        state.leader = event.leader;
        state.bidCount = event.bid_count;
        state.reserveMet = event.reserve_met;
        state.minNext = event.min_next_minor;
        state.buyNow = null; // offered only until the first bid
        state.youLead = state.you !== null && event.leader === state.you;
        this.bidRemember({
          seq: event.seq,
          amount_minor: event.amount_minor,
          price_minor: event.price_minor,
          bidder: event.bidder,
          leader: event.leader,
          placed_at: event.placed_at,
        });
        this.flash(this.el.price);
        break;
      case "bid.retracted":
        // Exchange staff retracted a bid: it leaves the history and the standing is the one
        // the server recomputed from the bids that stand.
        var retracted = this.bids[event.retracted_seq];
        delete this.bids[event.retracted_seq];
        if (retracted && state.you && retracted.bidder === state.you) {
          // Your only bids may have been the retracted one: you are then no longer "outbid".
          var bids = this.bids;
          this.youBid = Object.keys(bids).some(function (seq) {
            return bids[seq].bidder === state.you;
          });
        }
        state.price = event.price_minor;
        state.leader = event.leader;
        state.bidCount = event.bid_count;
        state.reserveMet = event.reserve_met;
        state.minNext = event.min_next_minor;
        state.youLead = state.you !== null && event.leader === state.you;
        state.buyNow = event.buy_now_minor === undefined ? state.buyNow : event.buy_now_minor;
        this.flash(this.el.price);
        // The bids after it may now show another price and leader: take them from a snapshot.
        if (!this.resyncing) this.resyncing = this.send({ type: "snapshot" });
        break;
      case "auction.extended":
        state.closesAt = Date.parse(event.closes_at);
        state.extended = true;
        this.flash(this.el["closes-at"]);
        break;
      case "auction.opened":
        state.status = "open";
        state.closesAt = Date.parse(event.closes_at);
        break;
      case "auction.closed":
        state.status = event.status;
        if (event.price_minor !== undefined) state.price = event.price_minor;
        state.winner = event.winner || null;
        state.boughtNow = Boolean(event.bought_now);
        state.buyNow = null;
        if (event.closed_at) state.closesAt = Math.min(state.closesAt, Date.parse(event.closed_at));
        break;
    }
    this.render();
  };

  AuctionPage.prototype.isLive = function () {
    return this.state.status === "open" || this.state.status === "scheduled";
  };

  // --- Drawing ---

  AuctionPage.prototype.text = function (name, value) {
    var node = this.el[name];
    if (node && node.textContent !== value) node.textContent = value;
  };

  AuctionPage.prototype.flash = function (node) {
    if (!node) return;
    node.classList.add("flash");
    window.setTimeout(function () { node.classList.remove("flash"); }, 700);
  };

  AuctionPage.prototype.render = function () {
    var state = this.state;
    var live = this.isLive();
    this.root.setAttribute("data-status", state.status);
    this.text("price-label", state.price === null ? "Start price" : "Current price");
    this.text("price", this.money(state.price === null ? state.startPrice : state.price));
    this.text("leader", state.leader || "No bids yet");
    this.text("bid-count", String(state.bidCount));
    this.text(
      "reserve",
      !state.hasReserve ? "No reserve" : state.reserveMet ? "Reserve met" : "Reserve not met"
    );
    if (this.el["closes-at"]) {
      this.text("closes-at", dateTimeFormat(state.closesAt));
      this.el["closes-at"].setAttribute("datetime", new Date(state.closesAt).toISOString());
    }
    if (this.el.extended) this.el.extended.hidden = !state.extended;
    if (this.el["min-next"] && state.minNext !== null) this.text("min-next", this.money(state.minNext));
    if (this.el["buy-now"]) this.el["buy-now"].hidden = !(live && state.buyNow !== null);
    this.standingRender();
    this.resultRender();
    if (!live) {
      if (this.el["bid-panel"]) this.el["bid-panel"].hidden = true;
    }
    this.historyRender();
    this.chartDraw();
    this.tick();
  };

  AuctionPage.prototype.standingRender = function () {
    var state = this.state;
    var node = this.el.standing;
    if (!node) return;
    var text = "";
    var kind = "";
    if (!this.isLive()) {
      if (state.you && state.winner === state.you) {
        text = "You won this auction.";
        kind = "leading";
      } else if (this.youBid) {
        text = "You did not win this auction.";
        kind = "outbid";
      }
    } else if (state.youLead) {
      text = "You are leading";
      kind = "leading";
    } else if (this.youBid) {
      text = "You have been outbid";
      kind = "outbid";
    }
    this.text("standing", text);
    node.classList.toggle("leading", kind === "leading");
    node.classList.toggle("outbid", kind === "outbid");
  };

  AuctionPage.prototype.resultRender = function () {
    var state = this.state;
    var node = this.el.result;
    if (!node || this.isLive()) {
      if (node) node.hidden = true;
      return;
    }
    // The server's own words stay when this page has no newer news than it had.
    if (state.status === "closed" && state.winner) {
      var verb = state.boughtNow ? "Bought now by " : "Sold to ";
      this.text("result", verb + state.winner + " for " + this.money(state.price) + ".");
    } else if (state.status === "no_sale") {
      this.text(
        "result",
        "Ended without a sale" + (state.hasReserve && !state.reserveMet ? " (reserve not met)." : ".")
      );
    } else if (state.status === "cancelled") {
      this.text("result", "Cancelled: nobody wins this auction.");
    }
    node.hidden = false;
  };

  AuctionPage.prototype.tick = function () {
    var state = this.state;
    if (!state || !this.el["time-left"]) return;
    var now = this.now();
    var text;
    this.text("time-label", this.isLive() ? "Time left" : "Ended");
    if (!this.isLive()) {
      text = dateTimeFormat(state.closesAt);
    } else if (now < state.opensAt) {
      text = "Opens in " + durationFormat(state.opensAt - now);
    } else if (now < state.closesAt) {
      text = durationFormat(state.closesAt - now);
    } else {
      text = "Closing…";
    }
    this.text("time-left", text);
  };

  AuctionPage.prototype.bidsSorted = function () {
    var bids = this.bids;
    return Object.keys(bids)
      .map(function (seq) { return bids[seq]; })
      .sort(function (a, b) { return a.seq - b.seq; });
  };

  AuctionPage.prototype.historyRender = function () {
    var body = this.el.history;
    if (!body) return;
    var self = this;
    var rows = this.bidsSorted().reverse().slice(0, HISTORY_ROWS);
    var fragment = document.createDocumentFragment();
    rows.forEach(function (bid) {
      var row = document.createElement("tr");
      var time = document.createElement("time");
      time.setAttribute("datetime", bid.placed_at);
      time.textContent = clockFormat(Date.parse(bid.placed_at));
      var mine = self.state.you && bid.bidder === self.state.you ? " (you)" : "";
      [time, bid.bidder + mine, self.money(bid.amount_minor), self.money(bid.price_minor), bid.leader]
        .forEach(function (value) {
          var cell = document.createElement("td");
          if (typeof value === "string") cell.textContent = value;
          else cell.appendChild(value);
          row.appendChild(cell);
        });
      fragment.appendChild(row);
    });
    if (!rows.length) {
      var empty = document.createElement("tr");
      empty.className = "empty";
      empty.innerHTML = '<td colspan="5" class="muted">No bids yet.</td>';
      fragment.appendChild(empty);
    }
    body.replaceChildren(fragment);
  };

  function svg(name, attributes, text) {
    var node = document.createElementNS(SVG_NS, name);
    Object.keys(attributes).forEach(function (key) { node.setAttribute(key, attributes[key]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // A step line of the price over time: the price holds until the next bid moves it.
  AuctionPage.prototype.chartDraw = function () {
    var chart = this.el.chart;
    if (!chart || !this.state) return;
    var self = this;
    var width = 800, height = 220;
    var left = 86, right = 14, top = 14, bottom = 28;
    var points = this.bidsSorted().map(function (bid) {
      return { t: Date.parse(bid.placed_at), price: bid.price_minor, bid: bid };
    });
    var nodes = [];
    if (!points.length) {
      nodes.push(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle" }, "No bids yet"));
      chart.replaceChildren.apply(chart, nodes);
      return;
    }
    var end = this.isLive() ? Math.min(this.now(), this.state.closesAt) : this.state.closesAt;
    var t0 = points[0].t;
    var t1 = Math.max(end, points[points.length - 1].t, t0 + 1000);
    var prices = points.map(function (p) { return p.price; });
    var low = Math.min.apply(null, prices.concat([this.state.startPrice]));
    var high = Math.max.apply(null, prices);
    if (high === low) high = low + 1;
    function x(t) { return left + ((t - t0) / (t1 - t0)) * (width - left - right); }
    function y(price) { return top + (1 - (price - low) / (high - low)) * (height - top - bottom); }

    nodes.push(svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: height - bottom }));
    nodes.push(svg("line", { class: "axis", x1: left, y1: height - bottom, x2: width - right, y2: height - bottom }));
    nodes.push(svg("text", { x: left - 6, y: y(high) + 4, "text-anchor": "end" }, this.money(high)));
    nodes.push(svg("text", { x: left - 6, y: y(low) + 4, "text-anchor": "end" }, this.money(low)));
    nodes.push(svg("text", { x: left, y: height - 8, "text-anchor": "start" }, clockFormat(t0)));
    nodes.push(svg("text", { x: width - right, y: height - 8, "text-anchor": "end" }, clockFormat(t1)));

    var path = "M" + x(points[0].t).toFixed(1) + " " + y(points[0].price).toFixed(1);
    for (var i = 1; i < points.length; i += 1) {
      path += " H" + x(points[i].t).toFixed(1) + " V" + y(points[i].price).toFixed(1);
    }
    path += " H" + x(t1).toFixed(1);
    nodes.push(svg("path", { class: "line", d: path }));
    points.forEach(function (p) {
      var dot = svg("circle", { class: "point", cx: x(p.t).toFixed(1), cy: y(p.price).toFixed(1), r: 3 });
      dot.appendChild(svg("title", {}, clockFormat(p.t) + " " + self.money(p.price) + " (" + p.bid.leader + ")"));
      nodes.push(dot);
    });
    chart.replaceChildren.apply(chart, nodes);
  };

  // --- The bid form over the websocket ---

  function clientBidIdNew() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID().replace(/-/g, "");
    return Date.now().toString(36) + Math.random().toString(36).slice(2, 12);
  }

  AuctionPage.prototype.formEnhance = function () {
    var form = this.el["bid-form"];
    if (!form) return;
    var self = this;
    this.inputs = {
      amount: form.querySelector("[name=amount]"),
      max: form.querySelector("[name=max_amount]"),
      id: form.querySelector("[name=client_bid_id]"),
    };
    form.addEventListener("submit", function (event) {
      // Not connected: the browser posts the form. A bid still pending from the websocket
      // keeps its client_bid_id in the form, so the exchange places it at most once.
      if (!self.isConnected()) return;
      event.preventDefault();
      if (!self.pendingBid) self.bidSend();
    });
  };

  AuctionPage.prototype.bidSend = function () {
    var amount = moneyParse(this.inputs.amount.value, this.exponent);
    var maxText = this.inputs.max ? this.inputs.max.value.trim() : "";
    var max = maxText ? moneyParse(maxText, this.exponent) : null;
    if (!(amount >= 1) || (max !== null && !(max >= 1))) {
      this.feedbackShow("error", "Enter amounts like 12.50 " + this.currency + ".");
      return;
    }
    if (!this.inputs.id.value) this.inputs.id.value = clientBidIdNew();
    this.pendingBid = {
      type: "bid",
      amount_minor: amount,
      max_amount_minor: max,
      client_bid_id: this.inputs.id.value,
    };
    this.submitBusy(true);
    this.feedbackShow("pending", "Sending your bid of " + this.money(amount) + "…");
    this.send(this.pendingBid);
    this.pendingSocket = this.live.socket;
  };

  AuctionPage.prototype.submitBusy = function (busy) {
    if (this.el["bid-submit"]) this.el["bid-submit"].disabled = busy;
  };

  AuctionPage.prototype.isPending = function (data) {
    return this.pendingBid !== null && data.client_bid_id === this.pendingBid.client_bid_id;
  };

  AuctionPage.prototype.bidAccepted = function (data) {
    if (!this.isPending(data)) return;
    this.pendingBid = null;
    this.submitBusy(false);
    this.youBid = true;
    if (data.seq > this.state.seq) this.state.youLead = data.leading; // bid.placed follows
    this.inputs.amount.value = "";
    if (this.inputs.max) this.inputs.max.value = "";
    this.inputs.id.value = clientBidIdNew();
    var price = this.money(data.price_minor);
    if (data.replayed) {
      this.feedbackShow("success", "That bid was already placed. The current price is " + price + ".");
    } else if (data.leading) {
      this.feedbackShow("success", "Your bid is in. You are leading at " + price + ".");
    } else {
      this.feedbackShow("error", "Your bid is in, but another bidder's maximum is higher: the price is now " + price + ".");
    }
    this.standingRender();
  };

  AuctionPage.prototype.errorShow = function (data) {
    if (data.client_bid_id === undefined) {
      this.resyncing = false; // e.g. a refused snapshot request: the next gap asks again
    } else if (this.isPending(data)) {
      this.pendingBid = null;
      this.submitBusy(false);
    }
    this.feedbackShow("error", data.detail || "Something went wrong (" + data.code + ").");
  };

  AuctionPage.prototype.feedbackShow = function (kind, text) {
    var node = this.el["bid-feedback"];
    if (!node) {
      if (this.el.connection) this.el.connection.textContent = text;
      return;
    }
    node.className = "bid-feedback " + kind;
    node.textContent = text;
    node.hidden = false;
  };

  // --- Start ---

  var table = document.querySelector("table[data-server-time]");
  if (table) listCountdownsStart(table);

  var root = document.getElementById("auction-live");
  var configNode = document.getElementById("auction-live-config");
  if (root && configNode && window.WebSocket) {
    new AuctionPage(root, JSON.parse(configNode.textContent));
  }
})();
