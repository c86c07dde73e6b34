// django-celery-beat's periodic task form: say in words when the chosen crontab runs (its inline
// script did this; here from a file, for the Content-Security-Policy).
(function ($) {
  "use strict";
  const crontabs = JSON.parse(document.getElementById("readable-crontabs").textContent);
  const help = $(".field-crontab .help");
  const original = help.text().trim();
  $(".field-crontab_translation").hide();
  $(".field-crontab").on("change", () => {
    const translation = crontabs[$("#id_crontab").val()];
    help.empty().append(document.createTextNode(original), $("<br>"),
      document.createTextNode("Translation: " + (translation || "")));
  });
})(django.jQuery);
