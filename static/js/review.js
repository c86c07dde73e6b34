// The review form: a rejection needs a comment, said beside the field before the page is sent.
(function () {
  "use strict";
  const form = document.getElementById("review-form");
  if (!form) return;
  const comment = document.getElementById("review-comment");
  const error = document.getElementById("review-error");
  form.addEventListener("submit", (event) => {
    if (event.submitter && event.submitter.value === "reject" && !comment.value.trim()) {
      event.preventDefault();
      error.textContent = "Say why you reject it: the author sees your comment and revises from it.";
      comment.setAttribute("aria-invalid", "true");
      comment.focus();
    }
  });
  comment.addEventListener("input", () => {
    error.textContent = "";
    comment.removeAttribute("aria-invalid");
  });
})();
