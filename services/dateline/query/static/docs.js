// The API's document in Swagger UI, every script from this service (no CDN, no inline
// script: the page runs under the same Content-Security-Policy as the dashboard).
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({ url: "/v1/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
});
