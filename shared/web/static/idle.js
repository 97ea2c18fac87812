/* The idle timeout on screen too: a signed-in page's session ends on the server when no request came
   for the configured time, so when that time has passed since this page was loaded, leave it for the
   sign-in page with location.replace: an unattended screen stops showing a case. */
(function () {
  "use strict";
  var seconds = parseInt(document.body.getAttribute("data-idle-seconds") || "0", 10);
  var target = document.body.getAttribute("data-idle-url");
  if (!seconds || !target) { return; }
  window.setTimeout(function () {
    document.documentElement.hidden = true;
    window.location.replace(target);
  }, seconds * 1000);
})();
