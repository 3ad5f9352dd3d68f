// Small progressive enhancements; every page works without this file.
(function () {
  "use strict";

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (target.matches("[data-confirm]") && !window.confirm(target.getAttribute("data-confirm"))) {
      event.preventDefault();
    }
    if (target.matches("[data-copy]") && navigator.clipboard) {
      navigator.clipboard.writeText(target.getAttribute("data-copy")).then(function () {
        target.textContent = "Copied";
      });
    }
    if (target.matches("[data-add-row]")) {
      addFormsetRow(target.getAttribute("data-add-row"));
    }
  });

  // The organization switcher acts as soon as another organization is chosen (its button is
  // for pages without JavaScript).
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches("select[data-submit-on-change]") && target.form) target.form.submit();
  });

  // Clone the last row of a Django formset table and bump the management form's TOTAL_FORMS.
  function addFormsetRow(prefix) {
    var table = document.querySelector('[data-formset="' + prefix + '"] tbody');
    var total = document.getElementById("id_" + prefix + "-TOTAL_FORMS");
    if (!table || !total) return;
    var index = parseInt(total.value, 10);
    var row = table.rows[table.rows.length - 1].cloneNode(true);
    row.querySelectorAll("input, select").forEach(function (input) {
      ["name", "id"].forEach(function (attr) {
        var value = input.getAttribute(attr);
        if (value) input.setAttribute(attr, value.replace(/-\d+-/, "-" + index + "-"));
      });
      if (input.tagName === "INPUT") input.value = "";
      if (input.tagName === "SELECT") input.selectedIndex = 0;
    });
    row.querySelectorAll(".error").forEach(function (e) { e.remove(); });
    table.appendChild(row);
    total.value = index + 1;
  }

  // Live notifications of the user's organizations (an auction won or sold).
  function notificationsConnect(path, delay) {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + path);
    socket.onmessage = function (message) {
      var data = JSON.parse(message.data);
      if (data.type === "notification") toastShow(data.text, data.url);
    };
    socket.onopen = function () { delay = 1000; };
    socket.onclose = function () {
      window.setTimeout(function () { notificationsConnect(path, Math.min(delay * 2, 30000)); }, delay);
    };
  }

  function toastShow(text, url) {
    var box = document.querySelector(".toasts");
    if (!box) return;
    var toast = document.createElement(url ? "a" : "div");
    toast.className = "toast";
    toast.textContent = text;
    if (url) toast.href = url;
    box.appendChild(toast);
    window.setTimeout(function () { toast.remove(); }, 15000);
  }

  var path = document.body.getAttribute("data-notifications");
  if (path && "WebSocket" in window) notificationsConnect(path, 1000);
})();
