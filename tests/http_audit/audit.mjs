// Runs graphql-http's GraphQL-over-HTTP audit against the URL given as the first argument and
// prints one JSON object: the count per status (ok, notice, warn, error) and every audit that
// was not ok, with the response that failed it.
import { auditServer } from "graphql-http";

const url = process.argv[2];
const results = await auditServer({ url });
const counts = { ok: 0, notice: 0, warn: 0, error: 0 };
const failed = [];
for (const result of results) {
  counts[result.status] += 1;
  if (result.status !== "ok") {
    const response = result.response;
    failed.push({
      id: result.id,
      name: result.name,
      status: result.status,
      reason: result.reason,
      responseStatus: response?.status,
      contentType: response?.headers.get("content-type"),
      body: response && !response.bodyUsed ? (await response.text()).slice(0, 500) : undefined,
    });
  }
}
console.log(JSON.stringify({ counts, failed }, null, 2));
