/* erp report bundle: progressive enhancement (tooltips, keyboard focus, CSV/PNG
   download, iframe resize). The page is complete without it. No eval, no
   network, no inline handlers; works under a hash-only CSP. */
(function () {
  "use strict";
  var doc = document, root = doc.documentElement;
  root.classList.add("js");
  var data = {};
  try { data = JSON.parse(doc.getElementById("erp-data").textContent); } catch (e) { data = {}; }

  // --- tooltips and keyboard focus ------------------------------------------------
  var tip = doc.createElement("div");
  tip.id = "erp-tip"; tip.setAttribute("role", "status"); tip.setAttribute("aria-live", "polite"); tip.hidden = true;
  doc.body.appendChild(tip);
  var active = null;
  Array.prototype.forEach.call(doc.querySelectorAll(".chart-svg .hit, .chart-svg .cell"), function (el) {
    var t = el.querySelector("title");
    if (t) { el.setAttribute("data-tip", t.textContent); el.removeChild(t); }
  });
  function show(el, x, y) {
    if (active && active !== el) active.classList.remove("active");
    active = el; el.classList.add("active");
    tip.textContent = el.getAttribute("data-tip") || "";
    tip.hidden = false;
    var w = tip.offsetWidth, h = tip.offsetHeight;
    var left = Math.min(Math.max(4, x + 12), root.clientWidth - w - 4);
    var top = y - h - 12 < 4 ? y + 16 : y - h - 12;
    tip.style.left = left + "px"; tip.style.top = top + "px";
  }
  function hide() { if (active) active.classList.remove("active"); active = null; tip.hidden = true; }
  doc.addEventListener("pointermove", function (e) {
    var el = e.target.closest && e.target.closest("[data-tip]");
    if (el) show(el, e.clientX, e.clientY); else if (active) hide();
  });
  doc.addEventListener("pointerleave", hide);
  function targets(svg) { return svg.querySelectorAll("[data-tip]"); }
  function focusAt(svg, i) {
    var list = targets(svg); if (!list.length) return;
    i = Math.max(0, Math.min(list.length - 1, i));
    svg.setAttribute("data-at", i);
    var r = list[i].getBoundingClientRect();
    show(list[i], r.left + r.width / 2, r.top + Math.min(r.height / 2, 20));
  }
  Array.prototype.forEach.call(doc.querySelectorAll(".chart-svg"), function (svg) {
    svg.addEventListener("keydown", function (e) {
      var at = +(svg.getAttribute("data-at") || -1), n = targets(svg).length;
      var moves = { ArrowRight: at + 1, ArrowDown: at + 1, ArrowLeft: at - 1, ArrowUp: at - 1, Home: 0, End: n - 1 };
      if (e.key in moves) { e.preventDefault(); focusAt(svg, moves[e.key] < 0 ? 0 : moves[e.key]); }
      else if (e.key === "Escape") { hide(); }
    });
    svg.addEventListener("focus", function () { focusAt(svg, +(svg.getAttribute("data-at") || 0)); });
    svg.addEventListener("blur", hide);
  });

  // --- downloads -------------------------------------------------------------------
  function save(blob, name) {
    var url = URL.createObjectURL(blob), a = doc.createElement("a");
    a.href = url; a.download = name; doc.body.appendChild(a); a.click(); doc.body.removeChild(a);
    setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
  }
  var csv = data.csv || {};
  Array.prototype.forEach.call(doc.querySelectorAll("a[data-csv]"), function (a) {
    a.addEventListener("click", function (e) {
      var id = a.getAttribute("data-csv");
      if (!Object.prototype.hasOwnProperty.call(csv, id)) return;
      e.preventDefault();
      save(new Blob([csv[id]], { type: "text/csv;charset=utf-8" }), a.getAttribute("download"));
    });
  });
  var PROPS = ["fill", "stroke", "stroke-width", "stroke-dasharray", "opacity", "font-size", "font-family", "font-weight"];
  function png(section, name) {
    var svg = section.querySelector(".chart-svg"); if (!svg) return;
    var copy = svg.cloneNode(true), src = svg.querySelectorAll("*"), dst = copy.querySelectorAll("*");
    for (var i = 0; i < src.length; i++) {
      var cs = getComputedStyle(src[i]);
      for (var j = 0; j < PROPS.length; j++) dst[i].setAttribute(PROPS[j], cs.getPropertyValue(PROPS[j]));
    }
    var vb = svg.viewBox.baseVal, bg = doc.createElementNS(svg.namespaceURI, "rect");
    bg.setAttribute("width", vb.width); bg.setAttribute("height", vb.height);
    bg.setAttribute("fill", getComputedStyle(section).backgroundColor);
    copy.insertBefore(bg, copy.firstChild);
    var img = new Image(), scale = 2;
    img.onload = function () {
      var c = doc.createElement("canvas");
      c.width = vb.width * scale; c.height = vb.height * scale;
      var ctx = c.getContext("2d"); ctx.scale(scale, scale); ctx.drawImage(img, 0, 0, vb.width, vb.height);
      c.toBlob(function (b) { if (b) save(b, name); }, "image/png");
    };
    img.src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(new XMLSerializer().serializeToString(copy));
  }
  Array.prototype.forEach.call(doc.querySelectorAll("button[data-png]"), function (b) {
    b.hidden = false;
    b.addEventListener("click", function () { png(b.closest(".widget"), b.getAttribute("data-png") + ".png"); });
  });

  // --- iframe height: post our content height (a number) to the host page ----------
  if (window.parent !== window && window.ResizeObserver) {
    var main = doc.getElementById("erp"), last = -1;
    var send = function () {
      var h = Math.ceil(main.getBoundingClientRect().height + main.offsetTop);
      if (h !== last) { last = h; window.parent.postMessage(h, "*"); }
    };
    new ResizeObserver(send).observe(main);
    send();
  }
})();
