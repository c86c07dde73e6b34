// Behaviour every page shares, kept out of the HTML so the Content-Security-Policy can refuse inline
// script and style: the phone menu, confirm-before-submit, submit-on-change, and bar widths.
(function () {
  "use strict";

  // The top menu on a phone: a button shows and hides it (desktop shows it always, by CSS).
  const toggle = document.getElementById("menu-toggle");
  const topbar = document.querySelector(".topbar");
  if (toggle && topbar) {
    toggle.addEventListener("click", () => {
      const open = topbar.classList.toggle("menu-open");
      toggle.setAttribute("aria-expanded", String(open));
    });
  }

  // <form data-confirm="Discard this draft?">: ask first.
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  // <select data-autosubmit>: a filter that applies as soon as it is chosen.
  document.addEventListener("change", (event) => {
    const field = event.target;
    if (field instanceof HTMLSelectElement && field.hasAttribute("data-autosubmit") && field.form) {
      field.form.requestSubmit();
    }
  });

  // Bars and markers sized by the server (data-width="37.5%", data-left="10%"): style attributes in
  // the HTML would need 'unsafe-inline'; styles set through the DOM do not.
  // At load they take their width at once (a bar with a width transition would grow in from 0); later
  // changes (live progress) still animate.
  document.querySelectorAll("[data-width]").forEach((node) => {
    node.style.transition = "none";
    node.style.width = node.dataset.width;
    void node.offsetWidth; // apply the width before the transition comes back
    node.style.transition = "";
  });
  document.querySelectorAll("[data-left]").forEach((node) => { node.style.left = node.dataset.left; });
})();
