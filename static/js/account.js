// API tokens page: a Copy button beside the new token's secret (shown only where the clipboard works).
(function () {
  const button = document.getElementById("copy-token");
  if (!button || !navigator.clipboard) return;
  const field = document.getElementById(button.dataset.copies);
  button.hidden = false;
  button.addEventListener("click", function () {
    field.select();
    navigator.clipboard.writeText(field.value).then(
      function () { button.textContent = "Copied"; },
      function () { button.textContent = "Select and copy"; }
    );
  });
})();
