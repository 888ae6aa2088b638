// The Vercel AI SDK as a user's app calls it, against flux-worker on 127.0.0.1.
// Usage: node check.mjs <scenario>; FLUX_BASE_URL (ending in /v1) and FLUX_API_KEY from the
// environment. Prints one JSON line that tests/e2e/test_vercel_ai_sdk.py checks; an SDK error
// exits non-zero with its message on stderr.
import { createOpenAI } from "@ai-sdk/openai";
import { generateImage, generateText } from "ai";
import { readFileSync } from "node:fs";

const openai = createOpenAI({
  baseURL: process.env.FLUX_BASE_URL,
  apiKey: process.env.FLUX_API_KEY,
});

// What a picture's bytes start with: enough to tell PNG, JPEG and WebP apart.
function kind(bytes) {
  const head = Buffer.from(bytes.slice(0, 12));
  if (head.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return "png";
  if (head[0] === 0xff && head[1] === 0xd8) return "jpeg";
  if (head.subarray(0, 4).toString() === "RIFF" && head.subarray(8, 12).toString() === "WEBP") return "webp";
  return "unknown";
}

const scenarios = {
  // generateImage: /images/generations; a gpt-image name sends no response_format, reads b64_json.
  async image() {
    const { images } = await generateImage({
      model: openai.image(process.env.FLUX_IMAGE_MODEL ?? "gpt-image-1"),
      prompt: "a lighthouse at dawn",
      size: "1024x1024",
      maxRetries: 0,
    });
    return { count: images.length, kind: kind(images[0].uint8Array), bytes: images[0].uint8Array.length };
  },
  // generateImage with an image: /images/edits as multipart, no response_format, reads b64_json.
  async edit() {
    const source = readFileSync(process.env.FLUX_EDIT_IMAGE);
    const { images } = await generateImage({
      model: openai.image(process.env.FLUX_IMAGE_MODEL ?? "gpt-image-1"),
      prompt: { text: "make it night", images: [source] },
      maxRetries: 0,
    });
    return { count: images.length, kind: kind(images[0].uint8Array), bytes: images[0].uint8Array.length };
  },
  // generateText on the default (Responses API) model: the answer's text carries the link.
  async text() {
    const result = await generateText({
      model: openai("gpt-5.4"),
      prompt: "a cute cat 16:9",
      maxRetries: 0,
    });
    return { text: result.text, finishReason: result.finishReason };
  },
  // generateText with OpenAI's image generation tool: the tool's result is the image as base64.
  async tool() {
    const result = await generateText({
      model: openai("gpt-5.4"),
      prompt: "a red bicycle",
      tools: { image_generation: openai.tools.imageGeneration({ outputFormat: "png" }) },
      maxRetries: 0,
    });
    const results = result.staticToolResults ?? result.toolResults ?? [];
    const images = results
      .filter((r) => r.toolName === "image_generation")
      .map((r) => Buffer.from(r.output.result, "base64"));
    return {
      text: result.text,
      images: images.length,
      kind: images.length ? kind(images[0]) : null,
    };
  },
};

const name = process.argv[2];
if (!scenarios[name]) {
  console.error(`unknown scenario ${name}; one of ${Object.keys(scenarios).join(", ")}`);
  process.exit(2);
}
try {
  console.log(JSON.stringify(await scenarios[name]()));
} catch (error) {
  console.error(`${error.name}: ${error.message}`);
  if (error.responseBody) console.error(error.responseBody);
  process.exit(1);
}
