/* Quick exit: leave at once for a neutral site with location.replace, so Back does not return here.
   The link works without this script too (it signs out and redirects); the script also hides the page
   first and answers Escape pressed twice. A bundled file: the pages allow no inline script. */
(function () {
  "use strict";
  function leave(link) {
    document.documentElement.hidden = true;
    window.location.replace(link.getAttribute("href"));
  }
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("[data-quick-exit]") : null;
    if (!link) { return; }
    event.preventDefault();
    leave(link);
  });
  var lastEscape = 0;
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") { return; }
    var now = Date.now();
    var link = document.querySelector("[data-quick-exit]");
    if (link && now - lastEscape < 1000) { leave(link); }
    lastEscape = now;
  });
})();
