// Jobs. On a job's page: its progress over the websocket (/ws/jobs/<id>/), each message the
// job's whole progress numbered by seq; an older one than the newest applied is ignored. The
// bar, the figures and the status change in place; the work items and usage are fetched again
// (at most every few seconds) and, when the job ends, the download links appear. On the new
// job form: a capture over the limit is caught before it is sent, and a chosen profile
// greys out the settings it replaces. Without this file the pages show the state at load
// and the form posts normally. The job page loads live.js (the websocket) before this file.
(function () {
  "use strict";

  var CLOSE_FORBIDDEN = 4403;
  var DETAILS_REFRESH_MS = 2000;
  var ENDED = { succeeded: true, failed: true };

  function number(n) {
    return Number(n || 0).toLocaleString("en-US");
  }

  // The same sentence as segmentation.views.progress_figures.
  function figures(p) {
    return (
      number(p.items_done) + " of " + number(p.items_total) + " segments, " +
      number(p.packets_done) + " of " + number(p.packets_total) + " packets, " +
      number(p.bytes_done) + " of " + number(p.bytes_total) + " bytes"
    );
  }

  // --- The job page -----------------------------------------------------------------------

  function JobPage(root, config) {
    var self = this;
    this.root = root;
    this.config = config;
    this.el = {};
    root.querySelectorAll("[data-live]").forEach(function (node) {
      self.el[node.getAttribute("data-live")] = node;
    });
    this.progress = null;
    this.refreshTimer = null;
    this.refreshedAt = 0;
    this.live = new window.LiveSocket(config.ws_path, {
      message: function (data) {
        if (data.type === "progress" && data.progress) {
          self.live.confirmed();
          self.connectionShow("live", "Live");
          self.apply(data.progress);
        }
      },
      lost: function (event) {
        if (event.code === CLOSE_FORBIDDEN) {
          self.connectionShow("offline", "You may not follow this job live.");
          return false;
        }
        self.connectionShow("offline", "Reconnecting…");
      },
    });
    this.apply(config.progress);
    // An ended job changes no more: nothing to follow.
    if (!ENDED[config.progress.status]) this.live.connect();
  }

  JobPage.prototype.connectionShow = function (state, text) {
    this.root.setAttribute("data-connection", state);
    if (this.el.connection) this.el.connection.textContent = text;
  };

  JobPage.prototype.apply = function (progress) {
    var previous = this.progress;
    if (previous && progress.seq < previous.seq) return; // older than what is shown
    this.progress = progress;
    var el = this.el;
    this.root.setAttribute("data-status", progress.status);
    if (el.status) {
      el.status.textContent = progress.status_display;
      el.status.className = "status status-job-" + progress.status;
    }
    if (el.bar) {
      el.bar.value = progress.percent;
      el.bar.textContent = progress.percent + "%";
    }
    if (el.percent) el.percent.textContent = progress.percent + "%";
    if (el.figures) el.figures.textContent = figures(progress);
    if (el.failure) {
      el.failure.hidden = progress.status !== "failed";
      if (el["failure-reason"]) el["failure-reason"].textContent = progress.failure_reason || "";
    }
    var succeeded = progress.status === "succeeded";
    if (el.downloads) {
      if (succeeded) {
        if (el["output-link"] && progress.output_url) el["output-link"].href = progress.output_url;
        if (el["manifest-link"] && progress.manifest_url) {
          el["manifest-link"].href = progress.manifest_url;
        }
        if (el["output-packets"]) el["output-packets"].textContent = progress.output_packets;
        if (el["output-bytes"]) el["output-bytes"].textContent = progress.output_bytes;
        if (el["output-sha256"]) el["output-sha256"].textContent = progress.output_sha256;
      }
      el.downloads.hidden = !succeeded;
    }
    if (!previous) return; // the state the page was rendered with
    if (ENDED[progress.status] && !ENDED[previous.status]) {
      // Nothing changes after the end: read the details once more and stop listening.
      this.live.stop();
      this.connectionShow("ended", "");
      this.detailsRefresh(true);
    } else if (progress.seq !== previous.seq) {
      this.detailsRefresh(false);
    }
  };

  // The work items, usage and SLA sections, read again from the page itself.
  JobPage.prototype.detailsRefresh = function (now) {
    var self = this;
    if (this.refreshTimer !== null) {
      if (!now) return;
      window.clearTimeout(this.refreshTimer);
    }
    var wait = now ? 0 : Math.max(0, this.refreshedAt + DETAILS_REFRESH_MS - Date.now());
    this.refreshTimer = window.setTimeout(function () {
      self.refreshTimer = null;
      self.refreshedAt = Date.now();
      window
        .fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (!html) return;
          var fresh = new DOMParser().parseFromString(html, "text/html");
          document.querySelectorAll("[data-refresh]").forEach(function (section) {
            var name = section.getAttribute("data-refresh");
            var replacement = fresh.querySelector('[data-refresh="' + name + '"]');
            if (replacement) section.replaceWith(document.adoptNode(replacement));
          });
        })
        .catch(function () { /* the next change or a reload shows them */ });
    }, wait);
  };

  // --- The new job form -------------------------------------------------------------------

  function jobFormEnhance(form) {
    var capture = form.querySelector("input[type=file][data-max-bytes]");
    if (capture) {
      var limit = Number(capture.getAttribute("data-max-bytes"));
      capture.addEventListener("change", function () {
        var file = capture.files && capture.files[0];
        if (file && limit && file.size > limit) {
          capture.setCustomValidity(
            file.name + " is " + number(file.size) + " bytes, over the limit of " +
            number(limit) + " bytes."
          );
        } else {
          capture.setCustomValidity("");
        }
        capture.reportValidity();
      });
      form.addEventListener("submit", function (event) {
        if (capture.validity.customError) { // only the size: the server checks the rest
          event.preventDefault();
          capture.reportValidity();
        }
      });
    }
    var profile = form.querySelector("select[name=profile]");
    var custom = form.querySelector("[data-custom-spec]");
    if (profile && custom) {
      var toggle = function () { custom.disabled = Boolean(profile.value); };
      profile.addEventListener("change", toggle);
      toggle();
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("job-live");
    var config = document.getElementById("job-live-config");
    if (root && config) new JobPage(root, JSON.parse(config.textContent));
    document.querySelectorAll("form[data-job-form]").forEach(jobFormEnhance);
  });
})();
