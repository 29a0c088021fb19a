//! The string enums of the contract.
//!
//! Closed enums (door, direction, residue result) reject values outside the contract: they
//! describe physical state that rules reason about. Open enums (fault code, detection kind,
//! service mode) accept unknown values as `Other(raw)`, as the contract allows new values to
//! be added that older rules ignore.

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// Both kinds of enum are written as their spelling.
macro_rules! serialized_as_str {
    ($name:ident) => {
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

macro_rules! closed_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            /// Every value, in contract order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The contract's spelling of every value.
            pub const NAMES: &'static [&'static str] = &[$($s),+];
            /// The contract's spelling.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
            /// Parses the contract's spelling.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$variant),)+ _ => None }
            }
        }

        serialized_as_str!($name);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&s).ok_or_else(|| de::Error::unknown_variant(&s, $name::NAMES))
            }
        }
    };
}

macro_rules! open_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $s:literal $(| $alias:literal)*),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vm])* $variant,)+
            /// A value this version does not know, kept as sent.
            Other(crate::Id),
        }

        impl $name {
            /// Every known value, in contract order.
            pub const KNOWN: &'static [$name] = &[$($name::$variant),+];
            /// The canonical spelling; unknown values are spelled as they were sent.
            pub fn as_str(&self) -> &str {
                match self { $($name::$variant => $s,)+ $name::Other(raw) => raw.as_str() }
            }
            /// The canonical spelling of a known value, `other` for unknown ones.
            pub fn name(&self) -> &'static str {
                match self { $($name::$variant => $s,)+ $name::Other(_) => "other" }
            }
            /// Parses a spelling or alias; anything else becomes `Other`.
            pub fn parse(s: &str) -> Self {
                match s { $($s $(| $alias)* => $name::$variant,)+ _ => $name::Other(s.into()) }
            }
        }

        serialized_as_str!($name);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Ok($name::parse(&s))
            }
        }
    };
}

closed_enum!(
    /// Direction of travel of an elevator car.
    Direction { Up = "up", Down = "down", Stop = "stop" }
);

closed_enum!(
    /// Car door state.
    Door { Open = "open", Opening = "opening", Closing = "closing", Closed = "closed" }
);

closed_enum!(
    /// Outcome of a pesticide residue rapid test.
    ResidueResult { Pass = "pass", Fail = "fail" }
);

closed_enum!(
    /// 投诉 (a consumer dispute) or 举报 (a report of a violation).
    ComplaintKind { Complaint = "complaint", Report = "report" }
);

closed_enum!(
    /// Handling progress of a complaint.
    ComplaintStatus { Accepted = "accepted", Rejected = "rejected", Mediating = "mediating", Closed = "closed" }
);

open_enum!(
    /// Operating mode of an elevator; derived faults are evaluated in `normal` only.
    #[derive(Default)]
    ServiceMode {
        #[default]
        Normal = "normal",
        Inspection = "inspection",
        Maintenance = "maintenance",
        Fire = "fire",
        OutOfService = "out_of_service",
    }
);

open_enum!(
    /// A fault or event reported by an elevator terminal. The numeric GB/T 24476 codes and the
    /// Chongqing extensions map onto the same values (`docs/contract.md` lists the table).
    FaultCode {
        /// 困人 (Chongqing 93).
        Trapped = "trapped" | "93",
        /// 冲顶 (Chongqing 92).
        TopOverrun = "top_overrun" | "92",
        /// 蹲底 (Chongqing 91).
        BottomOverrun = "bottom_overrun" | "91",
        /// 超速.
        Overspeed = "overspeed",
        /// 运行中开门 (05, unintended car movement).
        DoorOpenWhileMoving = "door_open_while_moving" | "05",
        /// 门区外停梯 (04).
        StoppedOutsideDoorZone = "stopped_outside_door_zone" | "04",
        /// 长时间开门.
        DoorOpenTooLong = "door_open_too_long",
        /// 反复开关门.
        DoorReopenRepeatedly = "door_reopen_repeatedly",
        /// 安全回路断路 (01).
        SafetyCircuitOpen = "safety_circuit_open" | "01",
        /// 电动机运转时间限制器动作 (06).
        MotorRuntimeLimiter = "motor_runtime_limiter" | "06",
        /// 停电 (41).
        PowerFailure = "power_failure" | "41",
        /// 紧急报警 (90).
        AlarmButton = "alarm_button" | "90",
        /// 楼层位置丢失 (07).
        PositionLost = "position_lost" | "07",
        /// Door close fault (02), an extension name.
        DoorCloseFault = "door_close_fault" | "02",
        /// Door open fault (03), an extension name.
        DoorOpenFault = "door_open_fault" | "03",
        /// Re-run prevention fault (08), an extension name.
        RerunPrevention = "rerun_prevention" | "08",
        /// Back to normal (40), an extension name.
        BackToNormal = "back_to_normal" | "40",
        /// Out of service (42), an extension name.
        OutOfService = "out_of_service" | "42",
        /// Inspection (43), an extension name.
        Inspection = "inspection" | "43",
        /// Fire return (44), an extension name.
        FireReturn = "fire_return" | "44",
        /// Firefighter operation (45), an extension name.
        FirefighterOperation = "firefighter_operation" | "45",
        /// Emergency power (46), an extension name.
        EmergencyPower = "emergency_power" | "46",
        /// Earthquake mode (47), an extension name.
        Earthquake = "earthquake" | "47",
    }
);

open_enum!(
    /// What a kitchen camera's AI saw.
    DetectionKind {
        NoMask = "no_mask",
        NoHat = "no_hat",
        NoUniform = "no_uniform",
        Smoking = "smoking",
        Phone = "phone",
        Rodent = "rodent",
        Stranger = "stranger",
        TrashUncovered = "trash_uncovered",
        Fire = "fire",
        UnattendedFire = "unattended_fire",
        WetFloor = "wet_floor",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_codes_map_to_names() {
        assert_eq!(FaultCode::parse("93"), FaultCode::Trapped);
        assert_eq!(FaultCode::parse("01"), FaultCode::SafetyCircuitOpen);
        assert_eq!(FaultCode::parse("41"), FaultCode::PowerFailure);
        assert_eq!(FaultCode::parse("trapped").as_str(), "trapped");
        let unknown = FaultCode::parse("99");
        assert_eq!(unknown, FaultCode::Other("99".into()));
        assert_eq!(unknown.name(), "other");
        assert_eq!(unknown.as_str(), "99");
    }

    #[test]
    fn closed_enums_reject_unknown_values() {
        assert_eq!(Door::parse("ajar"), None);
        let err = serde_json::from_str::<Door>("\"ajar\"").unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }
}
