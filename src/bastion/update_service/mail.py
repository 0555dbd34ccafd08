"""Rollout e-mail: tell a customer its upgrade is ready (R3), over SMTP."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from bastion.update_service.settings import UpdateServiceSettings
from bastion.update_service.vendor import Notice, Vendor


def compose(notice: Notice, settings: UpdateServiceSettings) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = notice.email
    message["Subject"] = "Bastion: an upgrade is ready for your appliances"
    lines = [
        f"Hello {notice.customer},",
        "",
        "These Bastion releases are now available to your appliances:",
        *(f"  - {spec}" for spec in notice.releases),
        "",
        "On each appliance open /appliance > Updates and choose Check for updates.",
        "Appliances without Internet access: submit their Appliance Download Key at",
        f"  {settings.public_url or 'the update service'}/",
    ]
    message.set_content("\n".join(lines) + "\n")
    return message


async def send_due_notices(vendor: Vendor, settings: UpdateServiceSettings) -> list[Notice]:
    """Send every notice due today; a notice is recorded only once its mail went out."""
    if settings.smtp_host is None:
        return []
    sent = []
    for notice in vendor.notices_due():
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        await aiosmtplib.send(
            compose(notice, settings),
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=password,
            start_tls=settings.smtp_starttls,
        )
        vendor.record_notice(notice)
        sent.append(notice)
    return sent
