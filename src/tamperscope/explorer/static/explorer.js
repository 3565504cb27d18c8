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

  function start() { drawCharts(); lazyFrames(); autoSubmit(); }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
