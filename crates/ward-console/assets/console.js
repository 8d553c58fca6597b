// ward console: optional niceties. Every page reads and works without this file.
"use strict";
(function () {
  // Times in the browser's zone; the UTC time stays in the title (shown on hover).
  function localTimes() {
    var format = new Intl.DateTimeFormat(undefined, {
      year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
    });
    document.querySelectorAll("time[datetime]").forEach(function (element) {
      var when = new Date(element.getAttribute("datetime"));
      if (!isNaN(when.getTime())) {
        element.textContent = format.format(when);
      }
    });
  }
  // "Select all" for the agents table's bulk actions.
  function selectAll() {
    var all = document.getElementById("select-all");
    if (!all) { return; }
    all.addEventListener("change", function () {
      document.querySelectorAll("input[name=id]").forEach(function (box) {
        box.checked = all.checked;
      });
    });
  }
  // A form marked data-confirm asks before it is sent.
  function confirms() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }
  // A section marked data-poll is asked for again every two seconds and swapped in, until the
  // answer no longer carries data-poll (nothing is awaited any more).
  function poll() {
    var section = document.querySelector("[data-poll]");
    if (!section) { return; }
    window.setTimeout(function () {
      fetch(section.getAttribute("data-poll"), { credentials: "same-origin", redirect: "error" })
        .then(function (answer) {
          if (!answer.ok) { throw new Error("status " + answer.status); }
          return answer.text();
        })
        .then(function (text) {
          var holder = document.createElement("div");
          holder.innerHTML = text;
          var fresh = holder.querySelector("#" + section.id);
          if (fresh) {
            section.replaceWith(fresh);
            localTimes();
          }
          poll();
        })
        .catch(function () { window.setTimeout(poll, 5000); });
    }, 2000);
  }
  document.addEventListener("DOMContentLoaded", function () {
    localTimes();
    selectAll();
    confirms();
    poll();
  });
})();
