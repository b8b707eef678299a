// Bundled by esbuild for TestAgentsSDKRelay: the Agents SDK's realtime
// classes, as a page would import them.
export { OpenAIRealtimeWebRTC, RealtimeAgent, RealtimeSession } from "@openai/agents-realtime";
