(function () {
  /* erp embed: resize each erp iframe to the height its own page reports.
     Accepts only a finite number, only from that iframe's window; sets the
     height only when it changes, so it never loops. */
  var frames = document.querySelectorAll("iframe[data-erp-report]");
  window.addEventListener("message", function (e) {
    if (typeof e.data !== "number" || !isFinite(e.data)) return;
    for (var i = 0; i < frames.length; i++) {
      if (e.source === frames[i].contentWindow) {
        var h = Math.max(50, Math.min(20000, Math.ceil(e.data)));
        if (String(h) !== frames[i].getAttribute("height")) frames[i].setAttribute("height", String(h));
      }
    }
  });
})();
