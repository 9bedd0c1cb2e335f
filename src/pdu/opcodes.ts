// iSCSI protocol constants (RFC 7143 sections 11.x). Plain `as const` objects so
// they inline well and can be used both as values and as union types.

/** Opcodes: byte 0, bits 0-5 of every BHS. */
export const Opcode = {
  // Initiator -> target
  NopOut: 0x00,
  ScsiCommand: 0x01,
  TaskMgmtRequest: 0x02,
  LoginRequest: 0x03,
  TextRequest: 0x04,
  DataOut: 0x05,
  LogoutRequest: 0x06,
  Snack: 0x10,
  // Target -> initiator
  NopIn: 0x20,
  ScsiResponse: 0x21,
  TaskMgmtResponse: 0x22,
  LoginResponse: 0x23,
  TextResponse: 0x24,
  DataIn: 0x25,
  LogoutResponse: 0x26,
  R2T: 0x31,
  AsyncMessage: 0x32,
  Reject: 0x3f,
} as const;
export type OpcodeValue = (typeof Opcode)[keyof typeof Opcode];

const opcodeNames = new Map<number, string>(Object.entries(Opcode).map(([k, v]) => [v, k]));

/** Human-readable opcode name for logs; unknown opcodes render as hex. */
export function opcodeName(op: number): string {
  return opcodeNames.get(op) ?? `Unknown(0x${op.toString(16).padStart(2, '0')})`;
}

/** True for the opcodes an initiator may send (what a target parses). */
export function isInitiatorOpcode(op: number): boolean {
  return op <= 0x06 || op === 0x10;
}

/** Byte 0 bit 6. */
export const IMMEDIATE_BIT = 0x40;
/** Byte 1 bit 7 (F, or T for login). */
export const FINAL_BIT = 0x80;
/** The reserved tag value (ITT of unsolicited target PDUs, TTT "no transfer"). */
export const RESERVED_TAG = 0xffffffff;

/** Reject PDU reason codes (RFC 7143 11.17.1). */
export const RejectReason = {
  DataDigestError: 0x02,
  SnackReject: 0x03,
  ProtocolError: 0x04,
  CommandNotSupported: 0x05,
  ImmediateCommandReject: 0x06,
  TaskInProgress: 0x07,
  InvalidDataAck: 0x08,
  InvalidPduField: 0x09,
  LongOperationReject: 0x0a,
  /** 0x0b was "Negotiation Reset"; deprecated by RFC 7143, never send it. */
  DeprecatedNegotiationReset: 0x0b,
  WaitingForLogout: 0x0c,
} as const;
export type RejectReasonValue = (typeof RejectReason)[keyof typeof RejectReason];

/** Login/security stages used in CSG/NSG (RFC 7143 11.12.3). */
export const LoginStage = {
  SecurityNegotiation: 0,
  LoginOperationalNegotiation: 1,
  FullFeaturePhase: 3,
} as const;
export type LoginStageValue = (typeof LoginStage)[keyof typeof LoginStage];

/** Login Response Status-Class (RFC 7143 11.13.5). */
export const LoginStatusClass = {
  Success: 0x00,
  Redirection: 0x01,
  InitiatorError: 0x02,
  TargetError: 0x03,
} as const;

/**
 * Login status as (Status-Class << 8) | Status-Detail (RFC 7143 11.13.5).
 * Split with `>> 8` and `& 0xff` for the two BHS bytes.
 */
export const LoginStatus = {
  Success: 0x0000,
  TargetMovedTemporarily: 0x0101,
  TargetMovedPermanently: 0x0102,
  InitiatorError: 0x0200,
  AuthenticationFailure: 0x0201,
  AuthorizationFailure: 0x0202,
  NotFound: 0x0203,
  TargetRemoved: 0x0204,
  UnsupportedVersion: 0x0205,
  TooManyConnections: 0x0206,
  MissingParameter: 0x0207,
  CantIncludeInSession: 0x0208,
  SessionTypeNotSupported: 0x0209,
  SessionDoesNotExist: 0x020a,
  InvalidDuringLogin: 0x020b,
  TargetError: 0x0300,
  ServiceUnavailable: 0x0301,
  OutOfResources: 0x0302,
} as const;
export type LoginStatusValue = (typeof LoginStatus)[keyof typeof LoginStatus];

/** Task Management Function request codes (RFC 7143 11.5.1; 9-12 from RFC 7144). */
export const TmfFunction = {
  AbortTask: 1,
  AbortTaskSet: 2,
  ClearAca: 3,
  ClearTaskSet: 4,
  LogicalUnitReset: 5,
  TargetWarmReset: 6,
  TargetColdReset: 7,
  TaskReassign: 8,
  QueryTask: 9,
  QueryTaskSet: 10,
  ITNexusReset: 11,
  QueryAsyncEvent: 12,
} as const;
export type TmfFunctionValue = (typeof TmfFunction)[keyof typeof TmfFunction];

/** Task Management Function response codes (RFC 7143 11.6.1; 7 from RFC 7144). */
export const TmfResponse = {
  FunctionComplete: 0,
  TaskDoesNotExist: 1,
  LunDoesNotExist: 2,
  TaskStillAllegiant: 3,
  TaskAllegianceReassignmentNotSupported: 4,
  TmfNotSupported: 5,
  FunctionAuthorizationFailed: 6,
  FunctionSucceeded: 7,
  FunctionRejected: 255,
} as const;
export type TmfResponseValue = (typeof TmfResponse)[keyof typeof TmfResponse];

/** Logout Request reason codes (RFC 7143 11.14.1). */
export const LogoutReason = {
  CloseSession: 0,
  CloseConnection: 1,
  RemoveConnectionForRecovery: 2,
} as const;
export type LogoutReasonValue = (typeof LogoutReason)[keyof typeof LogoutReason];

/** Logout Response codes (RFC 7143 11.15.1). */
export const LogoutResponseCode = {
  Success: 0,
  CidNotFound: 1,
  ConnectionRecoveryNotSupported: 2,
  CleanupFailed: 3,
} as const;
export type LogoutResponseCodeValue = (typeof LogoutResponseCode)[keyof typeof LogoutResponseCode];

/** SNACK types (RFC 7143 11.16.1). */
export const SnackType = {
  DataR2T: 0,
  Status: 1,
  DataAck: 2,
  RData: 3,
} as const;
export type SnackTypeValue = (typeof SnackType)[keyof typeof SnackType];

/** AsyncEvent codes (RFC 7143 11.9.1). */
export const AsyncEvent = {
  ScsiAsyncEvent: 0,
  LogoutRequest: 1,
  ConnectionDrop: 2,
  SessionDrop: 3,
  NegotiationRequest: 4,
  VendorSpecific: 255,
} as const;
export type AsyncEventValue = (typeof AsyncEvent)[keyof typeof AsyncEvent];

/** SCSI Response "Response" byte (RFC 7143 11.4.3). */
export const ScsiResponseCode = {
  CommandCompleted: 0x00,
  TargetFailure: 0x01,
} as const;
export type ScsiResponseCodeValue = (typeof ScsiResponseCode)[keyof typeof ScsiResponseCode];

/** SCSI status values (SAM). */
export const ScsiStatus = {
  Good: 0x00,
  CheckCondition: 0x02,
  ConditionMet: 0x04,
  Busy: 0x08,
  ReservationConflict: 0x18,
  TaskSetFull: 0x28,
  AcaActive: 0x30,
  TaskAborted: 0x40,
} as const;
export type ScsiStatusValue = (typeof ScsiStatus)[keyof typeof ScsiStatus];

/** SCSI Command ATTR field, byte 1 bits 0-2 (RFC 7143 11.3.1.2). */
export const TaskAttribute = {
  Untagged: 0,
  Simple: 1,
  Ordered: 2,
  HeadOfQueue: 3,
  Aca: 4,
} as const;
export type TaskAttributeValue = (typeof TaskAttribute)[keyof typeof TaskAttribute];

/** AHS types (RFC 7143 11.2.2). */
export const AhsType = {
  ExtendedCdb: 1,
  BidiReadLength: 2,
} as const;
