// The sign-in page: say why it is shown, when a redirect said so.
"use strict";

const why = document.getElementById("why");
const reasons = {
  failed: "That token is unknown or revoked.",
  expired: "That sign-in link was used already, or is more than 15 minutes old. Ask for another (dateline readers link NAME), or paste a token.",
  signedout: "Signed out.",
  needed: "Sign in to read the stories.",
};
for (const key of new URLSearchParams(location.search).keys()) {
  if (reasons[key]) { why.textContent = reasons[key]; why.hidden = false; break; }
}
