/* tamperscope explorer: draws the charts and loads sandboxed frames on demand.
   No inline script anywhere: pages carry chart specs in data-chart attributes. */
(function () {
  "use strict";

  function drawCharts() {
    var nodes = document.querySelectorAll("[data-chart]");
    if (!nodes.length || typeof window.Plotly === "undefined") { return; }
    nodes.forEach(function (node) {
      var spec;
      try { spec = JSON.parse(node.getAttribute("data-chart")); } catch (e) { return; }
      if (!spec || !spec.data) { return; }
      window.Plotly.newPlot(node, spec.data, spec.layout || {}, {
        displayModeBar: false, responsive: true, displaylogo: false
      }).then(function () { node.setAttribute("data-drawn", "true"); });
    });
  }

  function lazyFrames() {
    document.querySelectorAll("details.rendered").forEach(function (details) {
      details.addEventListener("toggle", function () {
        var frame = details.querySelector("iframe[data-src]");
        if (details.open && frame && !frame.getAttribute("src")) {
          frame.setAttribute("src", frame.getAttribute("data-src"));
        }
      });
    });
  }

  function autoSubmit() {
    var form = document.getElementById("filters");
    if (!form) { return; }
    form.querySelectorAll("select").forEach(function (select) {
      select.addEventListener("change", function () { form.submit(); });
    });
  }

  /* A table too wide for its box becomes cards (cards.css) on any screen, not only on a phone: every box is
     marked as fitting, the sheet applied everywhere, and the boxes whose table overflows unmarked. Again when the
     window changes width or a <details> opens (a closed one's table has no width). */
  var pending = false;
  function fitTables() {
    pending = false;
    var boxes = Array.prototype.slice.call(document.querySelectorAll(".scroll"));
    boxes.forEach(function (box) { box.classList.add("fits"); });
    var cards = document.getElementById("cards");
    if (cards) { cards.media = "all"; }
    boxes.filter(function (box) { return box.scrollWidth > box.clientWidth + 1; })
      .forEach(function (box) { box.classList.remove("fits"); });
  }
  function refit() {
    if (!pending) { pending = true; window.requestAnimationFrame(fitTables); }
  }

  function start() {
    fitTables(); drawCharts(); lazyFrames(); autoSubmit();
    var width = window.innerWidth;
    window.addEventListener("resize", function () {
      if (window.innerWidth !== width) { width = window.innerWidth; refit(); }
    });
    document.addEventListener("toggle", refit, true);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
