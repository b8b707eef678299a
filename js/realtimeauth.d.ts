// Types for realtimeauth.js, the browser client of a realtimeauth server.

/** The token data requestToken resolves to and tokenRefreshed carries. */
export interface TokenData {
  /** The OpenAI Realtime ephemeral key ("ek_…"). */
  token: string;
  /** When the token expires, in ms since the epoch on this page's clock (corrected for clock skew). */
  expiresAt: number;
  /** The token's life in whole seconds when it was issued. */
  expiresIn: number;
  /** The server session the token belongs to. */
  sessionId: string;
}

/** A clock for tests: now() in ms (monotonic), and timers on the same scale. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

export interface TokenManagerOptions {
  /** The site serving the handler. Default: the page's origin. */
  baseUrl?: string;
  /** Where the handler is mounted. Default "/api/voice-agent". */
  basePath?: string;
  /** Refresh this long before expiry, at most half the token's life. Default 30. */
  refreshThresholdSeconds?: number;
  /** Refresh before expiry without being asked. Default true. */
  enableAutoRefresh?: boolean;
  /** Refresh up to jitter × lead time later than the lead time, 0..1. Default 0.1. */
  jitter?: number;
  /** requestToken returns the current token while it has this long left (at most a quarter of its life). Default 5. */
  minValiditySeconds?: number;
  /** Backoff base in ms (full jitter). Default 1000. */
  retryBaseMs?: number;
  /** Backoff cap in ms. Default 10000. */
  retryCapMs?: number;
  /** Attempts per token request, the first included. Default 5. */
  maxAttempts?: number;
  /** Abort a request after this long. Default 15000. */
  requestTimeoutMs?: number;
  /** Extra request headers, e.g. Authorization for the server's authenticator. */
  headers?: Record<string, string>;
  /** fetch's credentials mode. Default "same-origin". */
  credentials?: RequestCredentials;
  /** A JSON body for POST /token (the server may ignore it). Default: no body. */
  tokenRequestBody?: unknown;
  /** For tests: replaces fetch. */
  fetch?: typeof fetch;
  /** For tests: replaces the clock and timers. */
  clock?: Clock;
  /** For tests: replaces Math.random. */
  random?: () => number;
}

/** Codes of failures the client detects itself; others are the server's "code". */
export type ClientErrorCode = "network_error" | "timeout" | "bad_response" | "destroyed" | "config_conflict";

/** Every failure: a failed attempt (tokenError), a rejected requestToken, a call after destroy. */
export class TokenError extends Error {
  name: "TokenError";
  /** The server's stable code (e.g. "rate_limited", "session_not_found"), a ClientErrorCode, or "http_<status>". */
  code: ClientErrorCode | string;
  /** The HTTP status, 0 when there was no answer. */
  status: number;
  /** Seconds the server asked to wait, if it did. */
  retryAfter?: number;
  /** Which attempt of the request failed, from 1. */
  attempt: number;
  /** Whether the same request may succeed later. */
  readonly retryable: boolean;
}

export interface TokenExpiredEvent {
  sessionId: string;
  /** expiresAt of the token that expired. */
  expiredAt: number;
}

export interface TokenManagerEvents {
  /** A new token, the first one included. */
  tokenRefreshed: (token: TokenData) => void;
  /** The token's life ended without a replacement. */
  tokenExpired: (event: TokenExpiredEvent) => void;
  /** One attempt failed. */
  tokenError: (error: TokenError) => void;
}

export class TokenManager {
  constructor(options?: TokenManagerOptions);
  on<E extends keyof TokenManagerEvents>(event: E, fn: TokenManagerEvents[E]): this;
  off<E extends keyof TokenManagerEvents>(event: E, fn: TokenManagerEvents[E]): this;
  /** A token valid for a while yet: the current one, a refreshed one or a new session's. Concurrent calls share one request. */
  requestToken(): Promise<TokenData>;
  /** The current token, or null when there is none or it has expired. */
  getToken(): TokenData | null;
  /** Cancels timers and requests, forgets the token; later calls throw a TokenError "destroyed". */
  destroy(): void;
  readonly destroyed: boolean;
}

/**
 * The page's token manager, created on the first call. Later calls without
 * options or with equal options return it; other options throw a TokenError
 * "config_conflict". After destroy(), the next call creates a new one.
 */
export function getTokenManager(options?: TokenManagerOptions): TokenManager;

export interface StartCallOptions extends Pick<TokenManagerOptions, "baseUrl" | "basePath" | "requestTimeoutMs" | "headers" | "credentials" | "fetch" | "clock"> {
  /** The audio to send. Default: the microphone (getUserMedia), stopped by destroy(). */
  stream?: MediaStream;
  /** Plays the model's audio. Default: none (use call.peerConnection's ontrack). */
  audioElement?: HTMLAudioElement;
  /** For tests: replaces new RTCPeerConnection(). */
  newPeerConnection?: () => RTCPeerConnection;
}

/** A live call made through the relay. */
export class RealtimeCall {
  /** The upstream's call ID ("rtc_…"). */
  readonly callId: string;
  readonly peerConnection: RTCPeerConnection;
  /** The "oai-events" data channel: Realtime events both ways. */
  readonly dataChannel: RTCDataChannel;
  /** Hangs up on the server (DELETE {basePath}/calls/{callId}), closes the connection and a microphone startCall opened. Idempotent. */
  destroy(): Promise<void>;
}

/**
 * Makes a WebRTC call through the server's relay (POST {basePath}/calls): no
 * key reaches the page. Rejects with a TokenError: the server's code
 * ("too_many_calls", "rate_limited", "relay_unavailable" without an OpenAI
 * key, …) or "network_error", "timeout", "bad_response".
 */
export function startCall(options?: StartCallOptions): Promise<RealtimeCall>;
