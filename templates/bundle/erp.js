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
  // A chart's targets are either elements with a tooltip (SVG <title>, moved to
  // data-tip) or, for long series, one ".hits" area: the bucket under the pointer is
  // found from its geometry and the tooltip read from that row of the data table.
  var tip = doc.createElement("div");
  tip.id = "erp-tip"; tip.setAttribute("role", "status"); tip.setAttribute("aria-live", "polite"); tip.hidden = true;
  doc.body.appendChild(tip);
  Array.prototype.forEach.call(doc.querySelectorAll(".chart-svg .hit, .chart-svg .cell"), function (el) {
    var t = el.querySelector("title");
    if (t) { el.setAttribute("data-tip", t.textContent); el.removeChild(t); }
  });
  var active = null, guide = null;
  function rowText(svg, i) {
    var rows = svg.closest(".widget").querySelectorAll("details.data table")[0];
    var row = rows && rows.tBodies[0] && rows.tBodies[0].rows[i];
    if (!row) return "";
    var heads = rows.tHead.rows[0].cells, parts = [];
    for (var c = 1; c < row.cells.length; c++) parts.push(heads[c].textContent + ": " + row.cells[c].textContent);
    return row.cells[0].textContent + " — " + parts.join(", ");
  }
  function area(svg) { return svg.querySelector(".hits"); }
  function count(svg) { var a = area(svg); return a ? +a.getAttribute("data-n") : svg.querySelectorAll("[data-tip]").length; }
  function place(x, y) {
    var w = tip.offsetWidth, h = tip.offsetHeight;
    tip.style.left = Math.min(Math.max(4, x + 12), root.clientWidth - w - 4) + "px";
    tip.style.top = (y - h - 12 < 4 ? y + 16 : y - h - 12) + "px";
  }
  function show(svg, i, x, y) {
    hideMark();
    svg.setAttribute("data-at", i);
    var a = area(svg), box;
    if (a) {
      var n = +a.getAttribute("data-n"), bx = +a.getAttribute("x"), bw = +a.getAttribute("width");
      var cx = bx + bw * (i + 0.5) / n;  // n equal bands, each centred on its bucket
      guide = doc.createElementNS(svg.namespaceURI, "line");
      guide.setAttribute("class", "guide"); guide.setAttribute("x1", cx); guide.setAttribute("x2", cx);
      guide.setAttribute("y1", a.getAttribute("y")); guide.setAttribute("y2", +a.getAttribute("y") + +a.getAttribute("height"));
      svg.appendChild(guide);
      tip.textContent = rowText(svg, i); box = guide.getBoundingClientRect();
    } else {
      active = svg.querySelectorAll("[data-tip]")[i]; if (!active) return;
      active.classList.add("active"); tip.textContent = active.getAttribute("data-tip");
      box = active.getBoundingClientRect();
    }
    tip.hidden = false;
    place(x === undefined ? box.left + box.width / 2 : x, y === undefined ? box.top + Math.min(box.height / 2, 20) : y);
  }
  function hideMark() {
    if (active) active.classList.remove("active");
    if (guide && guide.parentNode) guide.parentNode.removeChild(guide);
    active = null; guide = null;
  }
  function hide() { hideMark(); tip.hidden = true; }
  doc.addEventListener("pointermove", function (e) {
    var t = e.target, svg = t.closest && t.closest(".chart-svg");
    if (!svg) { if (!tip.hidden) hide(); return; }
    if (t.hasAttribute("data-tip")) {
      show(svg, Array.prototype.indexOf.call(svg.querySelectorAll("[data-tip]"), t), e.clientX, e.clientY);
    } else if (t.classList.contains("hits")) {
      var n = +t.getAttribute("data-n"), r = t.getBoundingClientRect(), f = (e.clientX - r.left) / r.width;
      var i = Math.floor(f * n);
      show(svg, Math.max(0, Math.min(n - 1, i)), e.clientX, e.clientY);
    } else if (t.classList.contains("guide")) {
      /* keep the tooltip */
    } else if (!tip.hidden) { hide(); }
  });
  doc.addEventListener("pointerleave", hide);
  Array.prototype.forEach.call(doc.querySelectorAll(".chart-svg"), function (svg) {
    svg.addEventListener("keydown", function (e) {
      var at = +(svg.getAttribute("data-at") || 0), n = count(svg);
      var moves = { ArrowRight: at + 1, ArrowDown: at + 1, ArrowLeft: at - 1, ArrowUp: at - 1, Home: 0, End: n - 1 };
      if (n && e.key in moves) { e.preventDefault(); show(svg, Math.max(0, Math.min(n - 1, moves[e.key]))); }
      else if (e.key === "Escape") { hide(); }
    });
    svg.addEventListener("focus", function () { if (count(svg)) show(svg, +(svg.getAttribute("data-at") || 0)); });
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
